"""The README's commands as the docs tests run them, as written.

A block of the README marked `<!-- docs-test: NAME ... -->` (a fenced sh block,
closed by `<!-- /docs-test -->`) is read by readme_block and run in a Workspace:
a scratch view of the repository (its playbooks, roles and plugins linked, a copy
of inventories/ to write in), with HOME there and an editor that writes the
vault's content when `ansible-vault create` opens it. The unit test
(tests/unit/test_readme_vault.py) points the inventory's host at a port that
refuses connections; the e2e test (tests/e2e/test_readme_docs.py) at a test server.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pexpect

from testbed import ROOT

README = ROOT / "README.md"
LINKED = (
    "playbooks",
    "roles",
    "action_plugins",
    "filter_plugins",
    "library",
    "module_utils",
    "vars_plugins",
)


def readme_block(name: str, text: str | None = None) -> str:
    """The fenced sh block after <!-- docs-test: NAME ... -->, dedented (of `text`,
    by default the README's)."""
    source = README.read_text() if text is None else text
    match = re.search(
        rf"<!-- docs-test: {re.escape(name)}\b.*?-->\s*```sh\n(.*?)```\s*<!-- /docs-test -->",
        source,
        re.S,
    )
    assert match, f"README.md has no docs-test block {name!r}"
    return textwrap.dedent(match.group(1))


def block_lines(name: str) -> list[str]:
    """The commands of a block, one a line, without trailing comments and blank lines."""
    lines = [line.split("  #")[0].strip() for line in readme_block(name).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]

    @property
    def inventory(self) -> Path:
        return self.root / "inventories" / "production"

    @property
    def vault_password_file(self) -> Path:
        return self.root / "home" / ".melk-vault-pass"

    def bash(self, script: str, timeout: float = 180, **env: str) -> tuple[int, str]:
        """The script in bash from the workspace's root; its exit code and output."""
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return result.returncode, result.stdout + result.stderr

    def at_a_terminal(self, script: str, timeout: float = 180) -> tuple[int, str]:
        """The script in bash on a terminal, as a user at a prompt runs it
        (ansible-vault create opens the editor only there)."""
        child = pexpect.spawn(
            "bash",
            ["-euo", "pipefail", "-c", script],
            cwd=str(self.root),
            env=self.env,
            encoding="utf-8",
            timeout=timeout,
        )
        child.expect(pexpect.EOF)
        child.close()
        status = child.exitstatus if child.exitstatus is not None else -1
        return int(status), str(child.before)


def make_workspace(root: Path, vault_text: str, **env: str) -> Workspace:
    """A scratch view of the repository in root (an empty directory): the editor
    writes vault_text into the file it is given; `env` goes on top of its environment."""
    for name in LINKED:
        (root / name).symlink_to(ROOT / name)
    subprocess.run(["cp", "-r", str(ROOT / "inventories"), str(root)], check=True)
    editor = root / "editor"
    editor.write_text(f'#!/bin/sh\nprintf %s {shlex.quote(vault_text)} > "$1"\n')
    editor.chmod(0o755)
    git_dir = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--absolute-git-dir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (root / "home").mkdir()
    return Workspace(
        root,
        {
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "HOME": str(root / "home"),
            "EDITOR": str(editor),
            "GIT_DIR": git_dir,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(root / "tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(root / "cp"),
            **env,
        },
    )
