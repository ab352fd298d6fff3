"""A provisioned SSH test server as the end-to-end and fault suites drive it.

Playbooks run as a user runs them (testbed.playbook), their output is kept for
the secret checks, and assertions read the server through `docker exec` (never
through the playbooks under test).
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import STATE_DIR, images, servers
from testbed.load import Traffic, under_load
from testbed.playbook import Command, Run, ansible_env, playbook_args
from testbed.servers import Server

__all__ = [
    "E2E_DIR",
    "GROUP_VARS",
    "SENTINEL",
    "SLOW_REQUEST_S",
    "Bed",
    "Run",
    "playbook_env",
    "slow_requests",
    "slow_requests_of",
    "start_bed",
    "stop_bed",
]

SENTINEL = "s3ntinel-VALUE-7f3a9c"  # an app_env secret that must never show up
E2E_DIR = STATE_DIR / "e2e"

GROUP_VARS: dict[str, object] = servers.group_vars(
    app_env={"APP_SECRET_TOKEN": SENTINEL, "APP_GREETING": "hello"},
    verify_seconds=3,
    # A release that never gets healthy is given up on after 10 s, not the
    # default 30 s: the outcome is the same and the suites are shorter.
    app_deploy_health_deadline=10,
)


# A request the servers' nginx took this long or longer to answer is listed when a test
# fails (slow_requests_of): the edge's access log says on which side of nginx it was slow.
SLOW_REQUEST_S = 1.0
SLOW_REQUESTS_SHOWN = 20
# The requests of the apps' access logs (roles/edge_proxy's format) that took `s`
# seconds or more, the last ones; nothing when there is no log.
_SLOW_AWK = (
    "awk -v s={seconds} '{{ for (i = 1; i <= NF; i++) if ($i ~ /^request_time=/) "
    '{{ split($i, t, "="); if (t[2] + 0 >= s) print FILENAME ": " $0 }} }}\' '
    "{logs} 2>/dev/null | tail -n {limit}"
)
ACCESS_LOGS = "/var/log/nginx/*.access.log"


def slow_requests_command(
    seconds: float = SLOW_REQUEST_S, limit: int = SLOW_REQUESTS_SHOWN, logs: str = ACCESS_LOGS
) -> str:
    """The shell command that lists them (on a server: slow_requests)."""
    return _SLOW_AWK.format(seconds=seconds, limit=limit, logs=logs)


def slow_requests(
    container: str, seconds: float = SLOW_REQUEST_S, limit: int = SLOW_REQUESTS_SHOWN
) -> str:
    """The last `limit` requests a server's nginx took `seconds` or more to answer, one
    access log line each ('' when none, or when the server cannot be read)."""
    result = subprocess.run(
        ["docker", "exec", container, "sh", "-c", slow_requests_command(seconds, limit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def slow_requests_of(fixtures: dict[str, Any]) -> str:
    """For a failed test: the slow requests on the servers of the beds among its fixtures
    (a Bed, or an object holding one as `.bed`), each server's under its name."""
    names: list[str] = []
    for value in fixtures.values():
        bed = value if isinstance(value, Bed) else getattr(value, "bed", None)
        if isinstance(bed, Bed):
            names += [s.name for s in [bed.server, *bed.servers] if s.name not in names]
    found = [(name, slow_requests(name)) for name in names]
    return "\n".join(f"{name}:\n{lines}" for name, lines in found if lines)


def playbook_env(control_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a suite's playbook run (SSH control sockets in the
    suite's own directory, by default the e2e suite's)."""
    return ansible_env(control_dir or E2E_DIR / "cp", **extra)


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
        return playbook_args(name, inventory or self.inventory, *extra)

    def env(self) -> dict[str, str]:
        return playbook_env(self.control_dir, **self.extra_env)

    def command(
        self, name: str, *extra: str, timeout: float = 600, inventory: Path | None = None
    ) -> Command:
        return Command(self.args(name, *extra, inventory=inventory), self.env(), timeout=timeout)

    def playbook(
        self, name: str, *extra: str, timeout: float = 600, inventory: Path | None = None
    ) -> Run:
        """Run a playbook of the project as a user would, and keep its output."""
        run = self.command(name, *extra, timeout=timeout, inventory=inventory).run()
        self.outputs.append(run.output)
        return run

    def spawn(self, name: str, *extra: str) -> subprocess.Popen[str]:
        """Start a playbook without waiting (to kill it, or to race it); the
        caller adds its output to `outputs`."""
        return self.command(name, *extra).spawn()

    @contextmanager
    def traffic(
        self, lead: float = 1.0, max_seconds: float = 240, min_cycle: float = 0.0
    ) -> Iterator[Traffic]:
        """Traffic through the server's edge proxy while the block runs (each worker
        at most one request every min_cycle seconds); the outcomes are in the
        Traffic once it is left."""
        with under_load(
            self.server.url, lead=lead, max_seconds=max_seconds, min_cycle=min_cycle
        ) as traffic:
            yield traffic

    def under_load(
        self, name: str, *extra: str, lead: float = 1.0, inventory: Path | None = None
    ) -> tuple[Run, Traffic]:
        """Run a playbook while traffic goes through the server's edge proxy
        (`lead` seconds of it before and after)."""
        with self.traffic(lead) as traffic:
            run = self.playbook(name, *extra, inventory=inventory)
        said = f"rc={run.rc} in {run.seconds:.1f} s; {traffic.summary()}"
        print(f"\n{name} {' '.join(extra)}: {said}")
        return run, traffic

    def sh(self, command: str, host: str | None = None) -> str:
        """A command as root on a test server (for assertions, not for deploys)."""
        return subprocess.run(
            ["docker", "exec", host or self.server.name, "sh", "-c", command],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def proxy_errors(self, lines: int = 20, host: str | None = None) -> str:
        """The last lines of the edge proxy's error log: why a request failed or
        stalled (upstream timeouts, resets), for an assertion's message."""
        tail = self.sh(f"tail -n {lines} /var/log/nginx/error.log 2>/dev/null || true", host)
        return f"\nnginx error.log, last {lines} lines:\n{tail or '(empty)'}"

    def state(self, host: str | None = None) -> dict[str, Any]:
        raw = self.sh("cat /opt/melk-ai/releases.json 2>/dev/null || true", host)
        return json.loads(raw) if raw.strip() else {}

    def release_env_sha256(self, name: str) -> str:
        """SHA-256 of the variable `name` (with a newline) in the environment of
        the serving release's process, computed on the server: a value is never
        printed, not even by a failing assertion. sha256 of "" when unset."""
        container = f"melk-ai-{self.state()['current']['slot']}"
        command = (
            f"pid=$(docker inspect --format '{{{{.State.Pid}}}}' {container}) && "
            f"tr '\\0' '\\n' < /proc/$pid/environ | sed -n 's/^{name}=//p'"
            " | sha256sum | cut -d' ' -f1"
        )
        return self.sh(command).strip()

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
    server_args: tuple[str, ...] = (),
    provision_args: tuple[str, ...] = (),
) -> Bed:
    """Start the servers, write their inventory, provision them.

    They start from the provisioned server image: provision.yml runs in full,
    but finds the distribution packages installed (Molecule's docker_host and
    edge_proxy scenarios test the install from nothing). server_args go to each
    server's docker run (e.g. another published port), provision_args to the
    provisioning run (e.g. -e @vars)."""
    servers.ssh_key()  # made once here, not by several threads at once
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        started = list(
            pool.map(
                lambda name: servers.start(name, images.SERVER_PROVISIONED.ref, server_args),
                names,
            )
        )
    path = servers.write_inventory(inventory, started, GROUP_VARS)
    bed = Bed(started[0], path, releases, started, [], control_dir, dict(extra_env or {}))
    run = bed.playbook("provision.yml", *provision_args)
    if run.rc != 0:
        raise AssertionError(f"provision.yml failed: {run.output[-4000:]}")
    return bed


def stop_bed(bed: Bed) -> None:
    if not os.environ.get("MELK_KEEP_TESTBED"):
        for server in bed.servers:
            servers.remove(server.name)
