"""The README's vault steps, run as written (issue 14, item 8).

The block marked `docs-test: vault-layout` runs with bash, in one shell, in a
scratch view of the repository (its playbooks, roles and plugins, and a copy of
inventories/production), with HOME there and an editor that writes the vault's
content. Then each line of the block `docs-test: playbooks` runs as written: every
playbook reads the vault (the password from ANSIBLE_VAULT_PASSWORD_FILE), finds
app_image and app_env defined, passes its input check on the controller and goes
on to the host, which is a local port that refuses connections (UNREACHABLE).
Without the password they stop at the vault.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest
import yaml
from playbook_harness import ROOT, unreachable_vars

pytestmark = pytest.mark.playbook

VAULT_SECRET = "sk-or-readme-test-91c"
EDITOR = f"#!/bin/sh\nprintf 'vault_openrouter_api_key: {VAULT_SECRET}\\n' > \"$1\"\n"
LINKED = ("playbooks", "roles", "filter_plugins", "library", "module_utils", "vars_plugins")


def readme_block(name: str) -> str:
    """The fenced sh block after <!-- docs-test: NAME ... -->, dedented."""
    text = (ROOT / "README.md").read_text()
    match = re.search(
        rf"<!-- docs-test: {re.escape(name)}\b.*?-->\s*```sh\n(.*?)```\s*<!-- /docs-test -->",
        text,
        re.S,
    )
    assert match, f"README.md has no docs-test block {name!r}"
    return textwrap.dedent(match.group(1))


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]

    @property
    def inventory(self) -> Path:
        return self.root / "inventories" / "production"

    def bash(self, script: str, **env: str) -> tuple[int, str]:
        """The script in bash; its exit code and output."""
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        return result.returncode, result.stdout + result.stderr

    def at_a_terminal(self, script: str) -> tuple[int, str]:
        """The script in bash on a terminal, as a user at a prompt runs it
        (ansible-vault create opens the editor only there)."""
        child = pexpect.spawn(
            "bash", ["-euo", "pipefail", "-c", script], cwd=str(self.root), env=self.env,
            encoding="utf-8", timeout=180,
        )  # fmt: skip
        child.expect(pexpect.EOF)
        child.close()
        return int(child.exitstatus if child.exitstatus is not None else -1), str(child.before)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("readme")
    for name in LINKED:
        (root / name).symlink_to(ROOT / name)
    subprocess.run(["cp", "-r", str(ROOT / "inventories"), str(root)], check=True)
    (root / "editor").write_text(EDITOR)
    (root / "editor").chmod(0o755)
    git_dir = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--absolute-git-dir"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        # The placeholder host, pointed at a port bound but not listening.
        host_vars = root / "inventories" / "production" / "host_vars"
        host_vars.mkdir()
        port = int(sock.getsockname()[1])
        (host_vars / "app1.example.com.yml").write_text(yaml.safe_dump(unreachable_vars(port)))
        env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "HOME": str(root / "home"),
            "EDITOR": str(root / "editor"),
            "GIT_DIR": git_dir,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(root / "tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(root / "cp"),
            "ANSIBLE_TIMEOUT": "5",
        }
        (root / "home").mkdir()
        yield Workspace(root, env)


@pytest.fixture(scope="module")
def laid_out(workspace: Workspace) -> Workspace:
    rc, output = workspace.at_a_terminal(readme_block("vault-layout"))
    assert rc == 0, output
    return workspace


def test_the_vault_layout_steps_run_as_written(laid_out: Workspace) -> None:
    group_vars = laid_out.inventory / "group_vars"
    password = laid_out.root / "home" / ".melk-vault-pass"
    assert oct(password.stat().st_mode & 0o777) == "0o600"
    assert not (group_vars / "all.yml").exists(), "one layout: group_vars/all/ only"
    vault = (group_vars / "all" / "vault.yml").read_text()
    assert vault.startswith("$ANSIBLE_VAULT;") and VAULT_SECRET not in vault
    main = yaml.safe_load((group_vars / "all" / "main.yml").read_text())
    assert main["app_image"] == "ghcr.io/your-org/melk-ai"
    assert main["app_env"] == {"OPENROUTER_API_KEY": "{{ vault_openrouter_api_key }}"}


def playbook_lines() -> list[str]:
    lines = [line.split("  #")[0].strip() for line in readme_block("playbooks").splitlines()]
    return [line for line in lines if line]


def test_the_readme_shows_every_playbook_with_the_inventory_directory() -> None:
    lines = playbook_lines()
    assert len(lines) == 6
    assert all(line.startswith("ansible-playbook -i inventories/production ") for line in lines)


@pytest.mark.parametrize("line", playbook_lines())
def test_each_playbook_reads_the_vault_and_gets_past_its_input_check(
    laid_out: Workspace, line: str
) -> None:
    password_file = str(laid_out.root / "home" / ".melk-vault-pass")
    rc, output = laid_out.bash(line, ANSIBLE_VAULT_PASSWORD_FILE=password_file)
    assert "Refused" not in output and "is undefined" not in output, output[-3000:]
    assert "UNREACHABLE" in output and rc == 4, output[-3000:]
    assert VAULT_SECRET not in output


def test_without_the_vault_password_a_playbook_stops_at_the_vault(laid_out: Workspace) -> None:
    rc, output = laid_out.bash(playbook_lines()[1])
    assert rc != 0 and "UNREACHABLE" not in output
    assert "vault" in output.lower(), output[-3000:]
