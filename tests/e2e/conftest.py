"""End-to-end fixtures: a real SSH server with its own Docker engine and nginx,
a local registry holding sample app releases, and the real playbooks."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testbed import ROOT, app, engine, images, registry, servers
from testbed.servers import Server

SENTINEL = "s3ntinel-VALUE-7f3a9c"  # an app_env secret that must never show up
E2E_DIR = ROOT / ".testbed" / "e2e"


@dataclass
class Run:
    args: list[str]
    rc: int
    output: str
    seconds: float


@dataclass
class Bed:
    server: Server
    inventory: Path
    releases: dict[str, str]
    servers: list[Server] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def playbook(
        self, name: str, *extra: str, timeout: float = 600, inventory: Path | None = None
    ) -> Run:
        """Run a playbook of the project as a user would, and keep its output."""
        args = [
            str(ROOT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(inventory or self.inventory),
            str(ROOT / "playbooks" / name),
            *extra,
        ]
        start = time.monotonic()
        result = subprocess.run(
            args,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=playbook_env(),
            check=False,
        )
        output = result.stdout + result.stderr
        self.outputs.append(output)
        return Run(args, result.returncode, output, time.monotonic() - start)

    def sh(self, command: str, host: str | None = None) -> str:
        """A command as root on a test server (for assertions, not for deploys)."""
        return subprocess.run(
            ["docker", "exec", host or self.server.name, "sh", "-c", command],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def state(self, host: str | None = None) -> dict[str, Any]:
        raw = self.sh("cat /opt/melk-ai/releases.json 2>/dev/null || true", host)
        return json.loads(raw) if raw.strip() else {}

    def served_version(self, server: Server | None = None) -> str:
        url = (server or self.server).url
        with urllib.request.urlopen(f"{url}/version", timeout=5) as resp:
            return str(json.loads(resp.read())["version"])


def playbook_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(E2E_DIR / "cp"),
    )
    return env


GROUP_VARS: dict[str, object] = {
    "app_image": app.pull_repository(),
    "app_env": {"APP_SECRET_TOKEN": SENTINEL, "APP_GREETING": "hello"},
    "app_verify_seconds": 3,
    # A release that never gets healthy is given up on after 10 s, not the
    # default 30 s: the outcome is the same and the suite is shorter.
    "app_deploy_health_deadline": 10,
    "docker_daemon_options": {"insecure-registries": [registry.pull_address()]},
}


@pytest.fixture(scope="session")
def releases() -> dict[str, str]:
    """The registry, and sample releases in it: name -> sha."""
    engine.ensure_engine()
    images.build_all(["server", "app-base"])
    registry.start()
    return {
        "v1": app.build_release("v1"),
        "v2": app.build_release("v2"),
        "v3": app.build_release("v3"),
        "unhealthy": app.build_release("v4-unhealthy", "unhealthy"),
        # healthy, until it has answered 100 real requests: passes the health
        # gate, takes traffic, then fails every request during verification
        "degrade": app.build_release(
            "v5-degrade", "degrade", {"APP_DEGRADE_AFTER_REQUESTS": "100"}
        ),
        # exits one second after start (and is restarted by its restart policy)
        "crash": app.build_release("v6-crash", "crash", {"APP_CRASH_AFTER": "1"}),
    }


def start_bed(names: list[str], releases: dict[str, str], inventory: str) -> Bed:
    started = [servers.start(name, images.SERVER_TRIXIE.ref) for name in names]
    path = servers.write_inventory(E2E_DIR / f"{inventory}.json", started, GROUP_VARS)
    bed = Bed(started[0], path, releases, servers=started)
    run = bed.playbook("provision.yml")
    assert run.rc == 0, run.output[-4000:]
    return bed


def stop_bed(bed: Bed) -> None:
    if not os.environ.get("MELK_KEEP_TESTBED"):
        for server in bed.servers:
            servers.remove(server.name)


@pytest.fixture(scope="session")
def bed(releases: dict[str, str]) -> Iterator[Bed]:
    """One SSH test server, provisioned. Tests share it in file order."""
    # Two people may run the e2e suite on one machine: MELK_E2E_SERVER names the server.
    name = os.environ.get("MELK_E2E_SERVER", "melk-e2e-1")
    bed = start_bed([name], releases, name)
    yield bed
    stop_bed(bed)
