"""The checks of edge_proxy's `site` entry point, run by ansible-playbook on the controller
(connection local) through the `apps` entry point, which writes nothing: the edge records
of the apps "on the host" are files in a temporary state directory.

A name another app holds is refused, a free one accepted; in a deploy, ACME settings
whose certificate the host does not have are refused (provision obtains it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
PLAY = """
- name: The site's checks
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Check
      ansible.builtin.include_role:
        name: edge_proxy
        tasks_from: apps
"""


def run_checks(tmp_path: Path, records: list[dict[str, object]], **extra: object) -> str:
    """Run the checks with these records on the "host"; '' when they pass, else the output."""
    state = tmp_path / "edge"
    state.mkdir()
    for record in records:
        (state / f"{record['app']}.json").write_text(json.dumps(record) + "\n")
    before = sorted(p.name for p in state.iterdir())
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    extra_vars = {"app_name": "shop", "edge_proxy_state_dir": str(state), **extra}
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    }
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "localhost,", str(playbook), "-e", json.dumps(extra_vars)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # the checks write nothing
    assert sorted(p.name for p in state.iterdir()) == before
    return "" if result.returncode == 0 else result.stdout + result.stderr


def other(app: str, names: list[str], block: int, **extra: object) -> dict[str, object]:
    return {
        "app": app,
        "proxy_port": 80,
        "tls_port": None,
        "server_names": names,
        "port_block": [block, 16],
        **extra,
    }


def test_a_free_name_passes_and_nothing_is_written(tmp_path: Path) -> None:
    records = [other("admin", ["c.test"], 18000), other("shop", ["a.test"], 18016)]
    assert run_checks(tmp_path, records, proxy_server_names=["a.test", "b.test"]) == ""


def test_a_name_another_app_holds_is_refused(tmp_path: Path) -> None:
    records = [other("admin", ["c.test"], 18000), other("shop", ["a.test"], 18016)]
    output = run_checks(tmp_path, records, proxy_server_names=["a.test", "c.test"])
    assert "server name c.test on port 80 is already app admin's" in output


@pytest.mark.parametrize(
    ("own", "refused"),
    [
        (other("shop", ["a.test"], 18016, tls="acme"), False),  # the host has it
        (other("shop", ["a.test"], 18016, tls="supplied"), True),  # ACME newly on
        (other("shop", ["a.test"], 18016), True),  # an older record
    ],
)
def test_a_deploy_refuses_acme_settings_whose_certificate_the_host_lacks(
    tmp_path: Path, own: dict[str, object], refused: bool
) -> None:
    output = run_checks(
        tmp_path,
        [own],
        proxy_server_names=["a.test"],
        proxy_acme_email="ops@example.com",
        edge_proxy_site_by_deploy=True,
    )
    assert ("run playbooks/provision.yml" in output) is refused, output[-2000:]
