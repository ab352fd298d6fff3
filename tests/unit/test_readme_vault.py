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

import socket
from collections.abc import Iterator

import pytest
import yaml
from playbook_harness import unreachable_vars

from testbed.readme import Workspace, block_lines, make_workspace, readme_block

pytestmark = pytest.mark.playbook

VAULT_SECRET = "sk-or-readme-test-91c"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("readme")
    found = make_workspace(root, f"vault_openrouter_api_key: {VAULT_SECRET}\n", ANSIBLE_TIMEOUT="5")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        # The placeholder host, pointed at a port bound but not listening.
        host_vars = found.inventory / "host_vars"
        host_vars.mkdir()
        port = int(sock.getsockname()[1])
        (host_vars / "app1.example.com.yml").write_text(yaml.safe_dump(unreachable_vars(port)))
        yield found


@pytest.fixture(scope="module")
def laid_out(workspace: Workspace) -> Workspace:
    rc, output = workspace.at_a_terminal(readme_block("vault-layout"))
    assert rc == 0, output
    return workspace


def test_the_vault_layout_steps_run_as_written(laid_out: Workspace) -> None:
    group_vars = laid_out.inventory / "group_vars"
    password = laid_out.vault_password_file
    assert oct(password.stat().st_mode & 0o777) == "0o600"
    assert not (group_vars / "all.yml").exists(), "one layout: group_vars/all/ only"
    vault = (group_vars / "all" / "vault.yml").read_text()
    assert vault.startswith("$ANSIBLE_VAULT;") and VAULT_SECRET not in vault
    main = yaml.safe_load((group_vars / "all" / "main.yml").read_text())
    assert main["app_image"] == "ghcr.io/your-org/melk-ai"
    assert main["app_env"] == {"OPENROUTER_API_KEY": "{{ vault_openrouter_api_key }}"}


def playbook_lines() -> list[str]:
    return block_lines("playbooks")


def test_the_readme_shows_every_playbook_with_the_inventory_directory() -> None:
    lines = playbook_lines()
    assert len(lines) == 6
    assert all(line.startswith("ansible-playbook -i inventories/production ") for line in lines)


@pytest.mark.parametrize("line", playbook_lines())
def test_each_playbook_reads_the_vault_and_gets_past_its_input_check(
    laid_out: Workspace, line: str
) -> None:
    password_file = str(laid_out.vault_password_file)
    rc, output = laid_out.bash(line, ANSIBLE_VAULT_PASSWORD_FILE=password_file)
    assert "Refused" not in output and "is undefined" not in output, output[-3000:]
    assert "UNREACHABLE" in output and rc == 4, output[-3000:]
    assert VAULT_SECRET not in output


def test_without_the_vault_password_a_playbook_stops_at_the_vault(laid_out: Workspace) -> None:
    rc, output = laid_out.bash(playbook_lines()[1])
    assert rc != 0 and "UNREACHABLE" not in output
    assert "vault" in output.lower(), output[-3000:]
