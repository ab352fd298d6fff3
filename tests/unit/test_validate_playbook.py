"""playbooks/validate.yml at the playbook level: bad input on one host stops the
whole run before any host is contacted (any_errors_fatal), and the input check
emits its verdict as data (melk_validation) for cdrunner.

Controller only: no Docker engine, no SSH server. Every host of the inventory
points at a local TCP port that refuses connections, so a task that contacts a
host shows up as UNREACHABLE. A positive control shows that it does.
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

SHA = "a" * 40
REFUSAL = "Refused before any host was touched"

pytestmark = pytest.mark.playbook


# host_vars of host 'bad' in each run; the runs go in parallel.
BAD_INPUT: dict[str, dict[str, object]] = {
    "filter check": {"app_port": 70000},
    "argument spec": {"app_port": "eighty"},
    "positive control": {"app_port": 8000},
    "half a registry login": {"app_registry_password": "s3cret-registry-pw-{{ 7*7 }}"},
    # app_release_command is a list; a command line as a string is refused
    "release command": {"app_release_command": "python3 manage.py migrate"},
}


def inventory(directory: Path, port: int, bad: Mapping[str, object]) -> Path:
    """Hosts 'bad' and 'good' on 127.0.0.1:port; host_vars/bad.yml holds `bad`."""
    (directory / "host_vars").mkdir(parents=True)
    hosts = {"all": {"hosts": {"bad": {}, "good": {}}, "vars": unreachable_vars(port)}}
    (directory / "hosts.yml").write_text(json.dumps(hosts))
    (directory / "host_vars" / "bad.yml").write_text(json.dumps(dict(bad)))
    return directory / "hosts.yml"


def start_deploy(directory: Path, hosts: Path) -> subprocess.Popen[str]:
    """ansible-playbook playbooks/deploy.yml with the repository's ansible.cfg,
    printing its result with the JSON callback."""
    env = playbook_env(directory)
    command = [
        ANSIBLE_PLAYBOOK,
        "-i",
        str(hosts),
        "playbooks/deploy.yml",
        "-e",
        f"sha={SHA}",
        "-e",
        "app_image=registry.example/x",
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any]]:
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, json_result(stdout, stderr)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, Any]]]:
    """The exit code and JSON report of each run of BAD_INPUT. All hosts point
    at a local port bound but not listening: connections to it are refused, and
    no other process can take it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        started = {}
        for label, bad in BAD_INPUT.items():
            directory = tmp_path_factory.mktemp("validate")
            started[label] = start_deploy(directory, inventory(directory, port, bad))
        yield {label: finish(process) for label, process in started.items()}


def results(report: Mapping[str, Any], host: str) -> list[tuple[int, str, Mapping[str, Any]]]:
    """(play index, task name, result) of every task result of the host."""
    return [
        (index, task["task"]["name"], task["hosts"][host])
        for index, play in enumerate(report["plays"])
        for task in play["tasks"]
        if host in task["hosts"]
    ]


def contacted_after_validation(report: Mapping[str, Any], host: str) -> list[str]:
    """Tasks of any play after the first (the validation play) that ran for
    the host, and any result that says the host was unreachable."""
    return [
        task
        for index, task, result in results(report, host)
        if index > 0 or result.get("unreachable")
    ]


def verdicts(report: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(report.get("global_custom_stats", {}).get("melk_validation", {}))


def test_bad_input_on_one_host_stops_the_run_before_any_host_is_contacted(
    runs: dict[str, tuple[int, Any]],
) -> None:
    rc, report = runs["filter check"]
    # The valid host passed the input check, and nothing after it ran for it:
    # no task of a later play (the Deploy play first), no connection attempt.
    assert contacted_after_validation(report, "good") == []
    assert report["stats"]["good"]["unreachable"] == 0
    assert report["stats"]["good"]["failures"] == 0
    failures = [r.get("msg", "") for _, _, r in results(report, "bad") if r.get("failed")]
    assert len(failures) == 1 and REFUSAL in failures[0] and "app_port 70000" in failures[0]
    assert verdicts(report)["good"] == {"accepted": True, "errors": []}
    assert verdicts(report)["bad"]["accepted"] is False
    assert "app_port 70000" in verdicts(report)["bad"]["errors"][0]
    assert rc == 2


def test_bad_input_refused_by_the_argument_spec_stops_the_run_too(
    runs: dict[str, tuple[int, Any]],
) -> None:
    rc, report = runs["argument spec"]
    assert contacted_after_validation(report, "good") == []
    assert report["stats"]["good"]["unreachable"] == 0
    (failure,) = [r for _, _, r in results(report, "bad") if r.get("failed")]
    assert failure.get("argument_errors"), "cdrunner reads a spec refusal from this field"
    assert "bad" not in verdicts(report)
    assert rc == 2


def test_positive_control_valid_input_contacts_the_hosts(
    runs: dict[str, tuple[int, Any]],
) -> None:
    """The same inventory with valid input: the Deploy play reaches both hosts,
    and the refused port shows as UNREACHABLE. So the assertions above would
    see a host contacted."""
    rc, report = runs["positive control"]
    assert verdicts(report) == {
        "bad": {"accepted": True, "errors": []},
        "good": {"accepted": True, "errors": []},
    }
    for host in ("bad", "good"):
        assert report["stats"][host]["unreachable"] == 1
        assert contacted_after_validation(report, host) != []
    assert rc == 4


def test_a_registry_password_without_a_username_is_refused_without_showing_it(
    runs: dict[str, tuple[int, Any]],
) -> None:
    _rc, report = runs["half a registry login"]
    assert contacted_after_validation(report, "good") == []
    assert report["stats"]["good"]["unreachable"] == 0
    failures = [r.get("msg", "") for _, _, r in results(report, "bad") if r.get("failed")]
    assert len(failures) == 1 and REFUSAL in failures[0]
    assert "app_registry_password is set but app_registry_username is not" in failures[0]
    assert verdicts(report)["bad"]["accepted"] is False
    assert "s3cret-registry-pw" not in json.dumps(report)


def test_a_release_command_that_is_not_a_list_is_refused_before_any_host_is_contacted(
    runs: dict[str, tuple[int, Any]],
) -> None:
    rc, report = runs["release command"]
    assert contacted_after_validation(report, "good") == []
    errors = verdicts(report)["bad"]["errors"]
    assert errors == [
        "app_release_command 'python3 manage.py migrate' is invalid: a list of the command"
        " and its arguments, such as [python3, manage.py, migrate]"
    ]
    assert rc == 2
