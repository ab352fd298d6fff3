"""Verify healthcheck: its probes really ran on the server, against its loopback
backends, and the health gate (ready) decided each case of side_effect.yml as it
should (their outcomes in ready-outcomes.json).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")


def backend_log(host) -> list[str]:
    return host.check_output("journalctl -u backend --no-pager -o cat").splitlines()


def test_backend_listens_only_on_loopback(host):
    # So a probe that reached it ran on the server itself, not on the controller.
    assert host.socket("tcp://127.0.0.1:18001").is_listening
    assert not host.socket("tcp://0.0.0.0:18001").is_listening
    assert not host.socket("tcp://127.0.0.1:18002").is_listening


def test_health_probes_reached_the_backend(host):
    probes = [line for line in backend_log(host) if '"GET /health HTTP/1.1" 200' in line]
    # Each converge (two: converge and idempotence) probes /health at least once
    # in wait and once in the 2 s watch.
    assert len(probes) >= 4, probes


def test_probes_came_from_loopback(host):
    probes = [line for line in backend_log(host) if "GET /health" in line]
    assert probes
    assert all(line.startswith("127.0.0.1 ") for line in probes), probes


def test_status_code_probes_reached_the_backend(host):
    missing = [line for line in backend_log(host) if '"GET /missing HTTP/1.1" 404' in line]
    # [404] expected (passes at once) and the default codes (fail after retries).
    assert len(missing) >= 4, missing


def test_wait_retried_the_flaky_backend(host):
    log = host.check_output("journalctl -u flaky --no-pager -o cat").splitlines()
    answers = [line.split('"')[2].split()[0] for line in log if '"GET /health ' in line]
    # each converge: two unhealthy answers, then the healthy one ends the wait
    assert answers == ["503", "503", "200"] * 2, answers


def flaky_answers(host, path: str) -> list[str]:
    """The flaky backend's answers to GET path since its last reset."""
    log = host.check_output("journalctl -u flaky --no-pager -o cat").splitlines()
    requests = [line.split('"')[1:3] for line in log if '"GET /' in line]
    resets = [i for i, (request, _) in enumerate(requests) if request.startswith("GET /reset ")]
    since = requests[resets[-1] + 1 :] if resets else requests
    return [answer.split()[0] for request, answer in since if request.startswith(f"GET {path} ")]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, Any]]:
    """What the health gate did in each case of side_effect.yml, by case name."""
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ready-outcomes.json"
    return dict(json.loads(path.read_text()))


# case -> patterns its failure message must match (None: the gate must pass)
READY_CASES: dict[str, list[str] | None] = {
    "healthy_stays_healthy": None,
    "turns_unhealthy": [r"turned unhealthy", r"\bHTTP 503\b"],
    "never_healthy": [r"not healthy within", r"no answer"],
    "container_running": None,
    "container_restarted": [r"\brestarted 1 times?\b"],
    "container_exited": [r"\bexited\b", r"\bexit code 3\b"],
    "container_gone": [r"\bgone\b"],
}


@pytest.mark.parametrize(("case", "causes"), READY_CASES.items())
def test_the_gate_decides_each_case(outcomes, case, causes):
    outcome = outcomes[case]
    if causes is None:
        assert not outcome["failed"], outcome["msg"]
        return
    assert outcome["failed"], f"the gate passed: {outcome}"
    assert outcome["msg"].startswith("health check failed"), outcome["msg"]
    for cause in causes:
        assert re.search(cause, outcome["msg"]), f"{cause!r} not in {outcome['msg']!r}"


def test_a_gate_that_passes_watched_its_whole_window(host, outcomes):
    # healthy_stays_healthy: 2 s watch after the first healthy answer, a probe
    # every 0.2 s, so about 11 probes of /ready (the only case probing it);
    # at least 5 leaves room for slow probes on a loaded machine, and a gate
    # that skipped its watch would have sent one
    assert outcomes["healthy_stays_healthy"]["seconds"] >= 2
    probes = [line for line in backend_log(host) if '"GET /ready HTTP/1.1" 200' in line]
    assert len(probes) >= 5, probes


def test_a_gate_stops_at_the_first_unhealthy_answer(host, outcomes):
    # the wait's healthy answer, the watch's second one, then its first 503 ends it
    assert flaky_answers(host, "/souring") == ["200", "200", "503"]
    assert outcomes["turns_unhealthy"]["seconds"] < 10


def test_a_gate_waits_its_deadline_for_a_dead_url(outcomes):
    assert outcomes["never_healthy"]["seconds"] >= 1


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("hc-running", "true 0 running 0"),
        ("hc-restarted", "true 1 running 0"),
        ("hc-exited", "false 0 exited 3"),
    ],
)
def test_the_containers_are_as_their_cases_say(host, name, state):
    # positive control: each container case inspects the state it is named for
    fields = "{{.State.Running}} {{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}"
    assert host.check_output(f"docker inspect --format '{fields}' {name}") == state
    assert host.run("docker inspect hc-gone").rc != 0
