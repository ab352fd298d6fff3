"""playbooks/maintenance.yml at the playbook level: bad input on one host stops the whole
run before any host is contacted (the play is any_errors_fatal, the checks run on the
controller).

Controller only: no Docker engine, no SSH server. Every host of the inventory points at a
local TCP port that refuses connections, so a task that contacts a host shows up as
UNREACHABLE. A positive control shows that it does.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from playbook_harness import ANSIBLE_PLAYBOOK, ROOT, json_result, playbook_env, unreachable_vars

REFUSAL = "Refused before any host was touched"

pytestmark = pytest.mark.playbook

# host_vars/bad.yml of each run (YAML text: the template is an inventory's !unsafe);
# the runs go in parallel.
BAD_INPUT: dict[str, str] = {
    "not on or off": "maintenance: maybe\n",
    "control character": 'maintenance: "on"\nmaintenance_message: "ring \\a bell"\n',
    "template": (
        'maintenance: "on"\n'
        "maintenance_message: !unsafe \"{{ lookup('ansible.builtin.pipe', 'id') }}\"\n"
    ),
    "positive control": 'maintenance: "on"\nmaintenance_message: "Back soon"\n',
}
EXPECTED = {
    "not on or off": "maintenance 'maybe' is invalid: it must be on or off",
    "control character": "maintenance_message 'ring \\x07 bell' is invalid",
    "template": "holds a template, and nothing is templated",
}


def inventory(directory: Path, port: int, bad: str) -> Path:
    """Hosts 'bad' and 'good' on 127.0.0.1:port; host_vars/bad.yml holds `bad`, 'good'
    has valid input."""
    (directory / "host_vars").mkdir(parents=True)
    hosts = {"all": {"hosts": {"bad": {}, "good": {}}, "vars": unreachable_vars(port)}}
    (directory / "hosts.yml").write_text(json.dumps(hosts))
    (directory / "host_vars" / "bad.yml").write_text(bad)
    (directory / "host_vars" / "good.yml").write_text('maintenance: "off"\n')
    return directory / "hosts.yml"


def start(directory: Path, hosts: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ANSIBLE_PLAYBOOK, "-i", str(hosts), "playbooks/maintenance.yml"],
        cwd=ROOT,
        env=playbook_env(directory),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, Any]]]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        started = {}
        for label, bad in BAD_INPUT.items():
            directory = tmp_path_factory.mktemp("maintenance")
            started[label] = start(directory, inventory(directory, port, bad))
        finished = {}
        for label, process in started.items():
            stdout, stderr = process.communicate(timeout=120)
            finished[label] = (process.returncode, json_result(stdout, stderr))
        yield finished


def results(report: Mapping[str, Any], host: str) -> list[tuple[str, Mapping[str, Any]]]:
    return [
        (task["task"]["name"], task["hosts"][host])
        for play in report["plays"]
        for task in play["tasks"]
        if host in task["hosts"]
    ]


def unreachable(report: Mapping[str, Any], host: str) -> list[str]:
    return [name for name, result in results(report, host) if result.get("unreachable")]


@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_bad_input_on_one_host_stops_the_run_before_any_host_is_contacted(
    runs: dict[str, tuple[int, Any]], label: str
) -> None:
    rc, report = runs[label]
    for host in ("bad", "good"):
        assert unreachable(report, host) == []
        assert report["stats"][host]["unreachable"] == 0
    failures = [r.get("msg", "") for _, r in results(report, "bad") if r.get("failed")]
    assert len(failures) == 1, failures
    assert REFUSAL in failures[0] and EXPECTED[label] in failures[0]
    assert report["stats"]["good"]["failures"] == 0
    assert rc == 2


def test_positive_control_valid_input_contacts_the_hosts(
    runs: dict[str, tuple[int, Any]],
) -> None:
    """The same inventory with valid input: the task that reads the site reaches both
    hosts, and the refused port shows as UNREACHABLE. So the assertions above would see
    a host contacted."""
    rc, report = runs["positive control"]
    for host in ("bad", "good"):
        assert unreachable(report, host) == ["edge_proxy : Read the app's site"]
    assert rc == 4
