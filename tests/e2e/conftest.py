"""End-to-end fixtures: a real SSH server with its own Docker engine and nginx,
a local registry holding sample app releases, and the real playbooks."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testbed import ROOT, app, engine, images, registry, servers

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
    server: servers.Server
    inventory: Path
    releases: dict[str, str]
    outputs: list[str] = field(default_factory=list)

    def playbook(self, name: str, *extra: str, timeout: float = 600) -> Run:
        """Run a playbook of the project as a user would, and keep its output."""
        args = [
            str(ROOT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(self.inventory),
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

    def sh(self, command: str) -> str:
        """A command as root on the test server (for assertions, not for deploys)."""
        return subprocess.run(
            ["docker", "exec", self.server.name, "sh", "-c", command],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def state(self) -> dict[str, object]:
        raw = self.sh("cat /opt/melk-ai/releases.json 2>/dev/null || true")
        return json.loads(raw) if raw.strip() else {}

    def served_version(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"{self.server.url}/version", timeout=5) as resp:
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


@pytest.fixture(scope="session")
def bed() -> Iterator[Bed]:
    engine.ensure_engine()
    images.build_all(["server", "app-base"])
    registry.start()
    releases = {
        "v1": app.build_release("v1"),
        "v2": app.build_release("v2"),
        "v3": app.build_release("v3"),
        "unhealthy": app.build_release("v4-unhealthy", "unhealthy"),
    }
    server = servers.start("melk-e2e-1", images.SERVER_TRIXIE.ref)
    inventory = servers.write_inventory(
        E2E_DIR / "inventory.json",
        [server],
        {
            "app_image": app.pull_repository(),
            "app_env": {"APP_SECRET_TOKEN": SENTINEL, "APP_GREETING": "hello"},
            "app_verify_seconds": 3,
            "docker_daemon_options": {"insecure-registries": [registry.pull_address()]},
        },
    )
    bed = Bed(server, inventory, releases)
    run = bed.playbook("provision.yml")
    assert run.rc == 0, run.output[-4000:]
    yield bed
    if not os.environ.get("MELK_KEEP_TESTBED"):
        servers.remove(server.name)
