"""A provisioned SSH test server as the end-to-end and fault suites drive it.

Playbooks run as a user runs them (ansible-playbook from the repository root),
their output is kept for the secret checks, and assertions read the server
through `docker exec` (never through the playbooks under test).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import ROOT, STATE_DIR, app, images, registry, servers
from testbed.servers import Server

SENTINEL = "s3ntinel-VALUE-7f3a9c"  # an app_env secret that must never show up
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"

GROUP_VARS: dict[str, object] = {
    "app_image": app.pull_repository(),
    "app_env": {"APP_SECRET_TOKEN": SENTINEL, "APP_GREETING": "hello"},
    "app_verify_seconds": 3,
    # A release that never gets healthy is given up on after 10 s, not the
    # default 30 s: the outcome is the same and the suites are shorter.
    "app_deploy_health_deadline": 10,
    "docker_daemon_options": {"insecure-registries": [registry.pull_address()]},
}


@dataclass
class Run:
    args: list[str]
    rc: int
    output: str
    seconds: float


def playbook_env(control_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a playbook run: this checkout's ansible.cfg, no colour,
    SSH control sockets in a directory of the suite's own."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir or STATE_DIR / "e2e" / "cp"),
    )
    env.update(extra)
    return env


@dataclass
class Bed:
    server: Server
    inventory: Path
    releases: dict[str, str]
    servers: list[Server] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    control_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def args(self, name: str, *extra: str, inventory: Path | None = None) -> list[str]:
        playbook = str(ROOT / "playbooks" / name)
        return [str(PLAYBOOK), "-i", str(inventory or self.inventory), playbook, *extra]

    def env(self) -> dict[str, str]:
        return playbook_env(self.control_dir, **self.extra_env)

    def playbook(
        self, name: str, *extra: str, timeout: float = 600, inventory: Path | None = None
    ) -> Run:
        """Run a playbook of the project as a user would, and keep its output."""
        args = self.args(name, *extra, inventory=inventory)
        start = time.monotonic()
        result = subprocess.run(
            args,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            check=False,
        )
        output = result.stdout + result.stderr
        self.outputs.append(output)
        return Run(args, result.returncode, output, time.monotonic() - start)

    def spawn(self, name: str, *extra: str) -> subprocess.Popen[str]:
        """Start a playbook without waiting (to kill it, or to race it)."""
        return subprocess.Popen(
            self.args(name, *extra),
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

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
        url = (server or self.server).url  # http://127.0.0.1:PORT, this machine
        with urllib.request.urlopen(f"{url}/version", timeout=5) as resp:  # noqa: S310  # nosec B310
            return str(json.loads(resp.read())["version"])


def start_bed(
    names: list[str],
    releases: dict[str, str],
    inventory: Path,
    control_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Bed:
    """Start the servers, write their inventory, provision them.

    They start from the provisioned server image: provision.yml runs in full,
    but finds the distribution packages installed (Molecule's docker_host and
    edge_proxy scenarios test the install from nothing)."""
    servers.ssh_key()  # made once here, not by several threads at once
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        started = list(
            pool.map(lambda name: servers.start(name, images.SERVER_PROVISIONED.ref), names)
        )
    path = servers.write_inventory(inventory, started, GROUP_VARS)
    bed = Bed(started[0], path, releases, started, [], control_dir, dict(extra_env or {}))
    run = bed.playbook("provision.yml")
    if run.rc != 0:
        raise AssertionError(f"provision.yml failed: {run.output[-4000:]}")
    return bed


def stop_bed(bed: Bed) -> None:
    if not os.environ.get("MELK_KEEP_TESTBED"):
        for server in bed.servers:
            servers.remove(server.name)
