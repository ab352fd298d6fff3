"""A template given inline on the command line runs nothing (issue 14, item 5).

ansible-core 2.19 trusts `-e key=value` and `-e JSON` as templates; the vars plugin
vars_plugins/melk_literal_cli.py makes them literal, so the input check sees the text
and refuses it (exit 2) before anything reads it as a template. Controller only: the
host points at a local port that refuses connections, and the template would create a
marker file on the controller if it ran.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playbook_harness import ANSIBLE_PLAYBOOK, ROOT, playbook_env, unreachable_vars

from vars_plugins.melk_literal_cli import inline_names

REFUSAL = "Refused before any host was touched"


def no_file(path: str) -> Any:
    raise AssertionError(f"no file is read here: {path}")


@pytest.mark.parametrize(
    ("options", "files", "names"),
    [
        (["sha=abc"], {}, {"sha"}),
        (['{"sha": "x", "app_env": {"A": "1"}}'], {}, {"sha", "app_env"}),
        (["sha=abc", "@vars.yml"], {"vars.yml": {"sha": "b"}}, set()),
        (["@vars.yml", "sha=abc"], {"vars.yml": {"sha": "b", "app_name": "n"}}, {"sha"}),
        (["@vars.yml"], {"vars.yml": {"sha": "b"}}, set()),
        (["", "app_name=a b=c"], {}, {"app_name", "b"}),
    ],
)
def test_inline_names_are_the_last_set_inline(
    options: list[str], files: dict[str, Any], names: set[str]
) -> None:
    assert inline_names(options, files.__getitem__ if files else no_file) == names


def run_deploy(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        hosts = {"all": {"hosts": {"h1": unreachable_vars(int(sock.getsockname()[1]))}}}
        inventory = directory / "hosts.yml"
        inventory.write_text(json.dumps(hosts))
        env = {**playbook_env(directory), "ANSIBLE_STDOUT_CALLBACK": "default"}
        command = [ANSIBLE_PLAYBOOK, "-i", str(inventory), "playbooks/deploy.yml", *extra]
        return subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )


def lookup(marker: Path) -> str:
    return "{{ lookup('pipe', 'touch " + str(marker) + "') }}"


@pytest.mark.playbook
@pytest.mark.parametrize(
    ("form", "named"),
    [
        (lambda t: f"sha={t}", "sha"),
        (lambda t: json.dumps({"sha": t}), "sha"),
        (lambda t: f"app_name={t}", "app_name"),
    ],
    ids=["key=value sha", "JSON sha", "key=value app_name"],
)
def test_a_template_on_the_command_line_runs_nothing_and_is_refused(
    tmp_path: Path, form: Any, named: str
) -> None:
    marker = tmp_path / "MARKER"
    extra = ["-e", form(lookup(marker)), "-e", "app_image=registry.example/x"]
    if named != "sha":
        extra += ["-e", "sha=" + "a" * 40]
    result = run_deploy(tmp_path, *extra)
    output = result.stdout + result.stderr
    assert not marker.exists(), "the template ran on the controller"
    assert result.returncode == 2, output[-3000:]
    assert REFUSAL in output and f"{named} (a string of" in output, output[-3000:]
    assert "UNREACHABLE" not in output


@pytest.mark.playbook
def test_a_file_given_with_at_is_still_a_trusted_vars_file(tmp_path: Path) -> None:
    """Positive control: -e @FILE is templated as before (the sha below is valid
    only once templated), so the run gets past the input check to the host."""
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text("sha: \"{{ 'a' * 40 }}\"\napp_image: registry.example/x\n")
    result = run_deploy(tmp_path, "-e", f"@{vars_file}")
    output = result.stdout + result.stderr
    assert REFUSAL not in output
    assert "UNREACHABLE" in output, output[-3000:]
