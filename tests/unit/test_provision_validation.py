"""provision.yml checks its inputs as deploy.yml does, before any host is touched; a deploy
refuses a sha form no image is tagged with; docker_host refuses daemon.json keys that expose
the engine's API even when used alone.

Controller only, like test_validate_playbook.py: the host points at a local TCP port that
refuses connections, so a task that contacts it shows up as UNREACHABLE, and each refusal
has a positive control that does reach (and fails to connect to) the host.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from playbook_harness import ANSIBLE_PLAYBOOK, ROOT, json_result, playbook_env, unreachable_vars

from testbed.tls import issue, make_ca

SHA = "0123456789abcdef0123456789abcdef01234567"
IMAGE = "registry.example/x"
REFUSAL = "Refused before any host was touched"
ROLE_REFUSAL = "Refuse daemon.json keys that expose or reconfigure the engine's API"
OPEN_ENGINE = {"hosts": ["tcp://0.0.0.0:2375", "unix:///var/run/docker.sock"]}
# docker_host alone, as its README shows it (roles: [docker_host]).
ROLE_PLAYBOOK = [{"name": "docker_host alone", "hosts": "all", "gather_facts": False,
                  "roles": [{"role": "docker_host", "become": True}]}]  # fmt: skip

# TLS settings: a certificate and its key, and the key of another certificate.
LEAF = issue(make_ca("validation CA"), ["app.example.com"])
OTHER = issue(make_ca("another CA"), ["app.example.com"])
TLS = {
    "proxy_server_names": ["app.example.com"],
    "proxy_tls_certificate": LEAF.certificate,
    "proxy_tls_key": LEAF.key,
}

pytestmark = pytest.mark.playbook


class Case(NamedTuple):
    playbook: str  # under playbooks/, or "role" for ROLE_PLAYBOOK
    host_vars: Mapping[str, object]
    refused: str | None  # a text of the refusal; None: the host is reached


CASES: dict[str, Case] = {
    "provision app_name ../etc": Case("provision.yml", {"app_name": "../etc"}, "app_name '../etc'"),
    "provision daemon hosts": Case(
        "provision.yml", {"docker_daemon_options": OPEN_ENGINE}, "docker_daemon_allow_api_options"
    ),
    "provision daemon tlsverify": Case(
        "provision.yml", {"docker_daemon_options": {"tlsverify": False}}, "sets tlsverify"
    ),
    # Provision needs neither sha nor app_image; valid input reaches the host.
    "provision control": Case("provision.yml", {"app_name": "shop"}, None),
    "provision daemon hosts allowed": Case(
        "provision.yml",
        {"docker_daemon_options": OPEN_ENGINE, "docker_daemon_allow_api_options": True},
        None,
    ),
    "deploy sha of 8": Case("deploy.yml", {"sha": SHA[:8], "app_image": IMAGE}, "(8 characters)"),
    "deploy sha of 7": Case("deploy.yml", {"sha": SHA[:7], "app_image": IMAGE}, None),
    "role daemon hosts": Case(
        "role", {"docker_host_daemon_options": OPEN_ENGINE}, "docker_daemon_allow_api_options"
    ),
    "role control": Case("role", {"docker_host_daemon_options": {"log-level": "warn"}}, None),
    "provision tls key of another certificate": Case(
        "provision.yml", {**TLS, "proxy_tls_key": OTHER.key}, "is not the private key"
    ),
    "provision tls port of plain http": Case(
        "provision.yml", {**TLS, "proxy_tls_port": 80}, "proxy_tls_port 80 is invalid"
    ),
    "deploy tls acme without names": Case(
        "deploy.yml",
        {"sha": SHA, "app_image": IMAGE, "proxy_acme_email": "ops@example.com"},
        "proxy_server_names is empty",
    ),
    "provision tls control": Case("provision.yml", TLS, None),
}


def write_inventory(directory: Path, port: int, host_vars: Mapping[str, object]) -> Path:
    hosts = {"all": {"hosts": {"target": dict(host_vars)}, "vars": unreachable_vars(port)}}
    path = directory / "hosts.json"
    path.write_text(json.dumps(hosts))
    return path


def run(directory: Path, port: int, case: Case) -> tuple[int, dict[str, Any]]:
    if case.playbook == "role":
        playbook = directory / "role.yml"
        playbook.write_text(json.dumps(ROLE_PLAYBOOK))
    else:
        playbook = ROOT / "playbooks" / case.playbook
    env = playbook_env(directory)
    command = [
        ANSIBLE_PLAYBOOK,
        "-i",
        str(write_inventory(directory, port, case.host_vars)),
        str(playbook),
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return result.returncode, json_result(result.stdout, result.stderr)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, Any]]]:
    """Every case at once, against a port bound but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        with ThreadPoolExecutor(len(CASES)) as pool:
            futures = {
                label: pool.submit(run, tmp_path_factory.mktemp("provision"), port, case)
                for label, case in CASES.items()
            }
            yield {label: future.result() for label, future in futures.items()}


def task_results(report: Mapping[str, Any]) -> list[tuple[int, str, Mapping[str, Any]]]:
    return [
        (index, task["task"]["name"], task["hosts"]["target"])
        for index, play in enumerate(report["plays"])
        for task in play["tasks"]
        if "target" in task["hosts"]
    ]


@pytest.mark.parametrize("label", [k for k, c in CASES.items() if c.refused])
def test_refused_before_any_host_is_touched(runs: dict[str, tuple[int, Any]], label: str) -> None:
    rc, report = runs[label]
    stats = report["stats"]["target"]
    assert stats["unreachable"] == 0, "the host was contacted"
    results = task_results(report)
    failed = [r.get("msg", "") for _, _, r in results if r.get("failed")]
    assert len(failed) == 1 and CASES[label].refused in failed[0], failed
    if CASES[label].playbook != "role":
        assert REFUSAL in failed[0]
        # Nothing of a later play (the provision or deploy play) ran.
        assert [name for index, name, _ in results if index > 0] == []
    else:
        # The refusal is the role's first task: nothing on the host ran before it.
        assert results[-1][1].endswith(ROLE_REFUSAL)
    assert rc == 2


@pytest.mark.parametrize("label", [k for k, c in CASES.items() if not c.refused])
def test_positive_control_reaches_the_host(runs: dict[str, tuple[int, Any]], label: str) -> None:
    """Valid input goes on to a task that connects: the refused port shows as UNREACHABLE,
    so the checks above would see a contacted host."""
    rc, report = runs[label]
    assert report["stats"]["target"]["unreachable"] == 1
    assert not [r for _, _, r in task_results(report) if r.get("failed")]
    assert rc == 4


@pytest.mark.parametrize("label", [k for k in CASES if " tls " in k])
def test_tls_keys_never_appear_in_the_output(runs: dict[str, tuple[int, Any]], label: str) -> None:
    text = json.dumps(runs[label][1])
    for key in (LEAF.key, OTHER.key):
        for line in key.splitlines()[1:-1]:
            assert line not in text
