"""Verify healthcheck: its probes really ran on the server, against its loopback backend."""

from __future__ import annotations

import os

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
