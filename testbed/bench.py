"""make bench: the deploy benchmark on the local test bed.

    python -m testbed.bench     run it (what `make bench` does)

It starts SSH test servers (melk-bench-1..5, systemd containers with their own
Docker engine), provisions them in one run, and runs the project's playbooks as
a user would while a bounded load goes through the edge proxy of melk-bench-1:

- deploys of a new release (image not yet on the host, then one already pulled),
  a rollback, and a release that degrades after the switch (automatic rollback);
- the naive method on the same host: `docker compose down && docker compose up -d`
  of the app on a published port, over SSH, under the same load;
- fleet scaling: one deploy to 1, 3 and 5 hosts.

It prints a table (also saved as .testbed/bench/bench.md) with each goal met or
not, and writes .testbed/bench/bench.json and bench.png (requests per second and
the version served during one deploy, ours beside the naive method). Ansible's
own settings come from ansible.cfg and the environment (ANSIBLE_STRATEGY,
ANSIBLE_STRATEGY_PLUGINS, ... pass through and are recorded). Missing a goal is
a result, not an error: the exit code is non-zero only when the bench could not
run. MELK_KEEP_TESTBED=1 keeps the servers afterwards.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testbed import ROOT, STATE_DIR, TestbedError, app, engine, images, registry, servers
from testbed.demo import Ticker, duration, error_message, say, served_chain
from testbed.load import Load, Outcome, Report
from testbed.servers import Server

BENCH_DIR = STATE_DIR / "bench"
LOG_DIR = BENCH_DIR / "logs"
PREFIX = "melk-bench"
FLEET_SIZES = (1, 3, 5)
VERIFY_SECONDS = 5
# The degrading release breaks once it has answered 100 requests; the watch
# stops at the first failure, so a longer window only makes sure it is seen.
DEGRADE_VERIFY_SECONDS = 15
DEGRADE_ENV = {"APP_DEGRADE_AFTER_REQUESTS": "100"}
NAIVE_PORT = 9000  # the naive app's port on the server (published to 127.0.0.1)
NAIVE_DIR = "naive"  # in the deploy user's home on the server
UPSTREAM = "/etc/nginx/edge-proxy/melk-ai.upstream"
LOAD_WORKERS = 4
LOAD_SLOW_MS = 400
LOAD_LEAD = 1.5  # seconds of load before a command starts and after it ends
SETTLE_LIMIT = 20.0  # seconds to wait after a command for the expected version
BUCKET = 0.5  # seconds a bar of the chart covers
INDENT = "    "

# Goals on this machine (issue 7), one host, image already in the registry.
GOAL_DEPLOY = 15.0
GOAL_ROLLBACK = 8.0
GOAL_RECOVERY = 5.0
GOAL_FLEET_RATIO = 1.5

# name -> (version, mode, extra env) of the sample releases the bench uses
RELEASES: dict[str, tuple[str, str, dict[str, str] | None]] = {
    "v1": ("bench-v1", "ok", None),
    "v2": ("bench-v2", "ok", None),
    "v3": ("bench-v3", "ok", None),
    "degrade": ("bench-v4-degrade", "degrade", DEGRADE_ENV),
    "naive-v2": ("bench-v2-naive", "ok", None),
    "naive-v3": ("bench-v3-naive", "ok", None),
    **{f"fleet-{n}": (f"bench-fleet-{n}", "ok", None) for n in FLEET_SIZES},
}
# Settings recorded with the figures (what made the playbooks fast or slow).
ANSIBLE_KEYS = (
    "DEFAULT_STRATEGY",
    "DEFAULT_STRATEGY_PLUGIN_PATH",
    "DEFAULT_FORKS",
    "DEFAULT_GATHERING",
    "CALLBACKS_ENABLED",
)


class BenchError(RuntimeError):
    """The bench could not run a step; the message says which and why."""


# ------------------------------------------------------- pure: the figures


def first_answer(outcomes: Iterable[Outcome], version: str, since: float) -> float | None:
    """Seconds from `since` to the first request answered by `version`."""
    ends = [o.end for o in outcomes if o.ok and o.version == version]
    return min(ends) - since if ends else None


def recovery_seconds(outcomes: Sequence[Outcome], old_version: str) -> float | None:
    """From the first failed request to the first answer of the old version
    for a request sent after the last failure (None if nothing failed or the
    old version never answered again)."""
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return None
    first = min(o.end for o in failed)
    last = max(o.end for o in failed)
    back = [o.end for o in outcomes if o.ok and o.version == old_version and o.start > last]
    return min(back) - first if back else None


def unavailable_seconds(outcomes: Sequence[Outcome]) -> float:
    """Seconds without service: from the start of a failed request until a
    request sent after it is answered, summed over the outages."""
    total = 0.0
    outage: float | None = None
    for outcome in sorted(outcomes, key=lambda o: o.end):
        if not outcome.ok:
            outage = outcome.start if outage is None else min(outage, outcome.start)
        elif outage is not None and outcome.start >= outage:
            total += outcome.end - outage
            outage = None
    if outage is not None:
        total += max(o.end for o in outcomes) - outage
    return total


@dataclass(frozen=True)
class Bucket:
    """Requests answered within [start, start + width) seconds of the origin."""

    start: float
    width: float
    versions: dict[str, int]
    failed: int

    def rps(self, count: int) -> float:
        return count / self.width


def buckets(outcomes: Iterable[Outcome], origin: float, width: float = BUCKET) -> list[Bucket]:
    """The answers per time bucket (by end time, relative to origin), every
    bucket from the first to the last one, empty ones included."""
    by_index: dict[int, tuple[Counter[str], int]] = {}
    for o in outcomes:
        index = int((o.end - origin) // width)
        versions, failed = by_index.get(index, (Counter(), 0))
        if o.ok:
            versions[o.version] += 1
        else:
            failed += 1
        by_index[index] = (versions, failed)
    if not by_index:
        return []
    result = []
    for index in range(min(by_index), max(by_index) + 1):
        versions, failed = by_index.get(index, (Counter(), 0))
        result.append(Bucket(round(index * width, 6), width, dict(versions), failed))
    return result


def ratio(ours: float | None, naive: float | None) -> float | None:
    if ours is None or naive is None or naive == 0:
        return None
    return ours / naive


def slowest_tasks(output: str, limit: int = 8) -> list[tuple[str, float]]:
    """The task summary of the profile_tasks callback: (task, seconds), slowest first."""
    found = []
    for line in output.splitlines():
        match = re.match(r"^(\S.*?) -{2,} (\d+\.\d+)s$", line.strip())
        if match:
            found.append((match.group(1), float(match.group(2))))
    return sorted(found, key=lambda t: -t[1])[:limit]


def task_count(output: str) -> int:
    """Task results the play printed (every host and task, skipped ones too)."""
    return len(re.findall(r"^(?:ok|changed|skipping|fatal|failed): \[", output, re.M))


# ------------------------------------------------------------ formatting


def secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def markdown_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# ------------------------------------------------------- running commands


@dataclass
class Timed:
    """One command the bench timed."""

    label: str
    command: str
    rc: int
    seconds: float
    output: str
    log: Path
    started: float  # time.monotonic() at start
    started_wall: float  # time.time() at start


class Progress:
    """What a running command is at, for the status line."""

    def __init__(self) -> None:
        self.task = "starting"
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> tuple[str, str]:
        return f"{INDENT}... {duration(self.elapsed())}: {self.task}", self.task


def ansible_env() -> dict[str, str]:
    """The user's environment (ANSIBLE_STRATEGY etc. pass through) with the
    test bed's fixed settings and the profile_tasks callback added."""
    callbacks = [c for c in os.environ.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if c]
    callbacks.append("ansible.posix.profile_tasks")
    return dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(BENCH_DIR / "cp"),
        ANSIBLE_CALLBACKS_ENABLED=",".join(callbacks),
    )


class Runner:
    """Runs commands with their output in numbered logs and a status line."""

    def __init__(self) -> None:
        self.count = 0

    def run(
        self,
        label: str,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        status: Callable[[Progress], tuple[str, str]] | None = None,
        timeout: float = 600,
    ) -> Timed:
        self.count += 1
        log = LOG_DIR / f"{self.count:02d}-{label}.log"
        command = shlex.join(args)
        say(f"{INDENT}$ {command}")
        progress = Progress()
        lines: list[str] = []
        started_wall = time.time()
        with (
            log.open("w") as out,
            Ticker(lambda: (status or Progress.line)(progress)),
            subprocess.Popen(
                list(args),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as proc,
        ):
            watchdog = threading.Timer(timeout, proc.kill)
            watchdog.daemon = True
            watchdog.start()
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                lines.append(line)
                match = re.match(r"TASK \[(?:[\w.-]+ : )?(.*)\] \*+", line)
                if match and not match.group(1).startswith("Validating arguments"):
                    progress.task = match.group(1)
            rc = proc.wait()
            watchdog.cancel()
        seconds = progress.elapsed()
        timed = Timed(
            label, command, rc, seconds, "".join(lines), log, progress.started, started_wall
        )
        say(f"{INDENT}exit {rc} after {seconds:.1f} s (output: {log.relative_to(ROOT)})")
        return timed

    def playbook(
        self,
        label: str,
        name: str,
        inventory: Path,
        *extra: str,
        status: Callable[[Progress], tuple[str, str]] | None = None,
    ) -> Timed:
        args = [
            ".venv/bin/ansible-playbook",  # commands run from the repository root
            "-i",
            str(inventory.relative_to(ROOT)),
            f"playbooks/{name}",
            *extra,
        ]
        timeout = 900 if name == "provision.yml" else 420
        return self.run(label, args, ansible_env(), status, timeout)


def sh(container: str, command: str, check: bool = True) -> str:
    """A command as root on a test server (set-up and readings, never timed)."""
    result = subprocess.run(
        ["docker", "exec", container, "sh", "-c", command],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise BenchError(f"on {container}: {command!r} failed: {result.stderr.strip()[-500:]}")
    return result.stdout.strip()


def published_port(container: str, port: int) -> int:
    out = subprocess.run(
        ["docker", "port", container, f"{port}/tcp"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.splitlines()[0].rsplit(":", 1)[1])


def upstream_mtime(container: str) -> float | None:
    raw = sh(container, f"stat -c %.9Y {UPSTREAM} 2>/dev/null || stat -c %Y {UPSTREAM}", False)
    try:
        return float(raw)
    except ValueError:
        return None


# ------------------------------------------------------------ under load


@dataclass
class Measure:
    """One timed command under load, and what the load saw."""

    name: str
    label: str
    rc: int
    wall: float
    switch: float | None  # first answer by the new version, since the command started
    switch_server: float | None  # upstream file written, since the command started
    recovery: float | None
    failed: int
    total: int
    unavailable: float
    versions: dict[str, int]
    command_window: tuple[float, float]  # in the load's clock
    slowest: list[tuple[str, float]] = field(default_factory=list)
    tasks: int = 0
    log: str = ""
    series: list[Bucket] = field(default_factory=list)


def wait_for(load: Load, version: str, after: float, limit: float) -> None:
    """Let the load run until `version` answers a request sent after `after`
    (load clock), or `limit` seconds have passed."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(o.ok and o.version == version and o.start > after for o in load.snapshot().outcomes):
            return
        time.sleep(0.2)


def live(load: Load) -> Callable[[Progress], tuple[str, str]]:
    def line(progress: Progress) -> tuple[str, str]:
        snap = load.snapshot()
        text = (
            f"{INDENT}live: {snap.total} requests, {len(snap.failed)} failed, "
            f"serving {served_chain(snap)}   [{duration(progress.elapsed())}: {progress.task}]"
        )
        return text, text

    return line


def under_load(
    url: str,
    command: Callable[[Callable[[Progress], tuple[str, str]]], Timed],
    expect: str,
) -> tuple[Timed, Report, float]:
    """The command while the load runs through url; the load goes on until
    `expect` serves again (bounded). Returns the run, the report and the
    load's start (time.monotonic())."""
    t0 = time.monotonic()
    load = Load(url, workers=LOAD_WORKERS, slow_ms=LOAD_SLOW_MS, max_seconds=600).start()
    try:
        time.sleep(LOAD_LEAD)
        timed = command(live(load))
        wait_for(load, expect, time.monotonic() - t0, SETTLE_LIMIT)
        time.sleep(LOAD_LEAD)
    finally:
        report = load.stop()
    say(f"{INDENT}load: {report.summary()} ({served_chain(report)})")
    return timed, report, t0


def measure(
    name: str,
    label: str,
    timed: Timed,
    report: Report,
    t0: float,
    new: str,
    old: str,
    upstream: float | None = None,
) -> Measure:
    start = timed.started - t0
    outcomes = report.outcomes
    switch_server = None
    if upstream is not None and upstream >= timed.started_wall:
        switch_server = upstream - timed.started_wall
    return Measure(
        name=name,
        label=label,
        rc=timed.rc,
        wall=timed.seconds,
        switch=first_answer(outcomes, new, start),
        switch_server=switch_server,
        recovery=recovery_seconds(outcomes, old),
        failed=len(report.failed),
        total=report.total,
        unavailable=unavailable_seconds(outcomes),
        versions=dict(report.versions),
        command_window=(start, start + timed.seconds),
        slowest=slowest_tasks(timed.output),
        tasks=task_count(timed.output),
        log=str(timed.log.relative_to(ROOT)),
        series=buckets(outcomes, start),
    )


# ------------------------------------------------------------- the bench


@dataclass
class Results:
    started: str
    measures: dict[str, Measure] = field(default_factory=dict)
    other: dict[str, Timed] = field(default_factory=dict)
    fleet: dict[int, Timed] = field(default_factory=dict)
    releases: dict[str, str] = field(default_factory=dict)
    ansible: dict[str, Any] = field(default_factory=dict)
    wall: float = 0.0
    # the machine's 1-minute load average at the start and the end: the
    # figures are only comparable between runs on an equally busy machine
    load_average: list[float] = field(default_factory=list)


class Bench:
    def __init__(self) -> None:
        self.runner = Runner()
        self.servers: list[Server] = []
        self.started: list[str] = []
        self.results = Results(datetime.now(UTC).isoformat(timespec="seconds"))
        self.results.load_average.append(round(os.getloadavg()[0], 1))
        self.step = 0
        self.steps = 7

    @property
    def releases(self) -> dict[str, str]:
        return self.results.releases

    @property
    def host(self) -> Server:
        return self.servers[0]

    def begin(self, title: str) -> None:
        self.step += 1
        say()
        say(f"==> [{self.step}/{self.steps}] {title}")

    def inventory(self, count: int) -> Path:
        group_vars: dict[str, object] = {
            "app_image": app.pull_repository(),
            "app_env": {"APP_GREETING": "hello from make bench"},
            "app_verify_seconds": VERIFY_SECONDS,
            "docker_daemon_options": {"insecure-registries": [registry.pull_address()]},
        }
        path = BENCH_DIR / f"inventory-{count}.json"
        return servers.write_inventory(path, self.servers[:count], group_vars)

    def image(self, name: str) -> str:
        return f"{app.pull_repository()}:{self.releases[name]}"

    def version(self, name: str) -> str:
        return RELEASES[name][0]

    # 1
    def prepare(self) -> None:
        self.begin("Docker engine, base images, registry, sample releases")
        engine.ensure_engine()
        # Servers start from the provisioned image (the packages provision.yml
        # installs are there already): provisioning is not a measured figure.
        images.build_all(["server-provisioned", "app-base"])
        registry.start()
        for name, (version, mode, env) in RELEASES.items():
            self.releases[name] = app.build_release(version, mode, env)
        say(f"{INDENT}{len(RELEASES)} releases in the local registry as {app.pull_repository()}")
        self.results.ansible = ansible_settings()
        strategy = self.results.ansible.get("DEFAULT_STRATEGY", {}).get("value", "linear")
        say(f"{INDENT}ansible-core {self.results.ansible.get('version')}, strategy {strategy}")

    # 2
    def start_servers(self) -> None:
        count = max(FLEET_SIZES)
        names = [f"{PREFIX}-{i}" for i in range(1, count + 1)]
        self.begin(f"Starting {count} test servers ({names[0]} .. {names[-1]}) in parallel")
        self.started = names
        servers.ssh_key()  # made once here, not by five threads at once

        def one(name: str) -> Server:
            extra: tuple[str, ...] = ()
            if name == names[0]:
                extra += ("-p", f"127.0.0.1::{NAIVE_PORT}")
            return servers.start(name, images.SERVER_PROVISIONED.ref, extra_args=extra)

        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=count) as pool:
            self.servers = list(pool.map(one, names))
        say(f"{INDENT}{count} servers answer over SSH after {time.monotonic() - began:.1f} s")

    # 3
    def provision(self) -> None:
        self.begin(f"Provisioning all {len(self.servers)} servers in one run")
        inventory = self.inventory(len(self.servers))
        timed = self.runner.playbook("provision", "provision.yml", inventory)
        self.results.other["provision"] = timed
        if timed.rc != 0:
            raise BenchError(f"provision.yml failed: {error_message(timed.output)}")
        timed = self.runner.playbook(
            "first-deploy", "deploy.yml", inventory, "-e", f"sha={self.releases['v1']}"
        )
        self.results.other["first_deploy"] = timed
        if timed.rc != 0:
            raise BenchError(f"the first deploy failed: {error_message(timed.output)}")

    def ours(self, name: str, label: str, playbook: str, new: str, old: str, *extra: str) -> None:
        say(f"{INDENT}{label}")
        inventory = self.inventory(1)

        def command(status: Callable[[Progress], tuple[str, str]]) -> Timed:
            return self.runner.playbook(name, playbook, inventory, *extra, status=status)

        expect = old if name == "degrade" else new
        timed, report, t0 = under_load(self.host.url, command, self.version(expect))
        upstream = upstream_mtime(self.host.name)
        found = measure(
            name, label, timed, report, t0, self.version(new), self.version(old), upstream
        )
        self.results.measures[name] = found

    # 4
    def ours_runs(self) -> None:
        self.begin(f"Ours on {self.host.name} under load: deploys, rollback, degrading release")
        v2, v3, deg = self.releases["v2"], self.releases["v3"], self.releases["degrade"]
        self.ours(
            "deploy_cold",
            "deploy, image not on the host",
            "deploy.yml",
            "v2",
            "v1",
            "-e",
            f"sha={v2}",
        )
        sh(self.host.name, f"docker pull -q {self.image('v3')}")
        self.ours(
            "deploy_warm",
            "deploy, image already on the host",
            "deploy.yml",
            "v3",
            "v2",
            "-e",
            f"sha={v3}",
        )
        self.ours("rollback", "rollback to the previous release", "rollback.yml", "v2", "v3")
        self.ours(
            "degrade",
            "deploy of a release that degrades after the switch",
            "deploy.yml",
            "degrade",
            "v2",
            "-e",
            f"sha={deg}",
            "-e",
            f"app_verify_seconds={DEGRADE_VERIFY_SECONDS}",
        )

    def naive(self, name: str, label: str, release: str, old: str) -> None:
        say(f"{INDENT}{label}")
        url = f"http://127.0.0.1:{published_port(self.host.name, NAIVE_PORT)}"
        script = (
            f"cd ~/{NAIVE_DIR} && echo APP_IMAGE={self.image(release)} > .env"
            " && docker compose down && docker compose up -d"
        )

        def command(status: Callable[[Progress], tuple[str, str]]) -> Timed:
            return self.runner.run(name, [*servers.ssh_command(self.host), script], status=status)

        timed, report, t0 = under_load(url, command, self.version(release))
        found = measure(name, label, timed, report, t0, self.version(release), self.version(old))
        self.results.measures[name] = found

    # 5
    def naive_runs(self) -> None:
        self.begin(f"The naive method on {self.host.name}: docker compose down && up -d")
        compose = (
            "services:\n  app:\n    image: ${APP_IMAGE:?}\n"
            f"    ports: ['{NAIVE_PORT}:8000']\n    restart: unless-stopped\n"
        )
        home = f"/home/deploy/{NAIVE_DIR}"
        sh(self.host.name, f"mkdir -p {home} && cat > {home}/compose.yaml << 'EOF'\n{compose}EOF")
        sh(self.host.name, f"echo APP_IMAGE={self.image('v1')} > {home}/.env")
        sh(self.host.name, f"chown -R deploy:deploy {home}")
        sh(self.host.name, f"cd {home} && docker compose up -d --wait", check=True)
        say(f"{INDENT}{self.version('v1')} serves on the server's port {NAIVE_PORT} (compose)")
        self.naive("naive_cold", "naive, image not on the host", "naive-v2", "v1")
        sh(self.host.name, f"docker pull -q {self.image('naive-v3')}")
        self.naive("naive_warm", "naive, image already on the host", "naive-v3", "naive-v2")
        sh(self.host.name, f"cd {home} && docker compose down", check=False)

    # 6
    def fleet(self) -> None:
        self.begin("Fleet scaling: one deploy to 1, 3 and 5 hosts (no load)")
        for count in FLEET_SIZES:
            sha = self.releases[f"fleet-{count}"]
            timed = self.runner.playbook(
                f"fleet-{count}", "deploy.yml", self.inventory(count), "-e", f"sha={sha}"
            )
            self.results.fleet[count] = timed

    # 7
    def report(self, wall: float) -> None:
        self.begin("Figures")
        self.results.wall = wall
        self.results.load_average.append(round(os.getloadavg()[0], 1))
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        lines = table(self.results)
        for line in lines:
            say(line)
        (BENCH_DIR / "bench.md").write_text("\n".join(lines) + "\n")
        (BENCH_DIR / "bench.json").write_text(json.dumps(to_json(self.results), indent=2) + "\n")
        chart(self.results, BENCH_DIR / "bench.png")
        say()
        for name in ("bench.md", "bench.json", "bench.png"):
            say(f"{INDENT}wrote {(BENCH_DIR / name).relative_to(ROOT)}")

    def clean(self) -> None:
        say()
        say("==> Removing the bench servers")
        if os.environ.get("MELK_KEEP_TESTBED") == "1":
            say(f"{INDENT}MELK_KEEP_TESTBED=1: kept {', '.join(self.started) or 'none'}")
            return
        with ThreadPoolExecutor(max_workers=5) as pool:
            list(pool.map(servers.remove, self.started))
        say(f"{INDENT}removed {', '.join(self.started) or 'none'} and their volumes")


def ansible_settings() -> dict[str, Any]:
    """ansible-core's version and the settings that shape a run's speed, with
    where each came from (env, ansible.cfg, default)."""
    env = ansible_env()
    found: dict[str, Any] = {}
    version = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible"), "--version"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    ).stdout
    match = re.search(r"core ([\d.]+)", version)
    found["version"] = match.group(1) if match else "unknown"
    dump = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-config"), "dump", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    ).stdout
    try:
        entries = json.loads(dump)
    except ValueError:
        entries = []
    for entry in entries if isinstance(entries, list) else []:
        if entry.get("name") in ANSIBLE_KEYS:
            origin = str(entry.get("origin", ""))
            origin = "ansible.cfg" if origin.endswith("ansible.cfg") else origin
            found[entry["name"]] = {"value": entry.get("value"), "origin": origin}
    config = (ROOT / "ansible.cfg").read_text()
    for key in ("pipelining", "ssh_args"):
        match = re.search(rf"^{key}\s*=\s*(.*)$", config, re.M)
        found[key] = match.group(1).strip() if match else None
    found["env"] = {
        k: v.replace(f"{ROOT}/", "")
        for k, v in sorted(os.environ.items())
        if k.startswith("ANSIBLE_")
    }
    return found


# ------------------------------------------------------------- the report


@dataclass(frozen=True)
class Goal:
    text: str
    figure: str
    met: bool | None  # None: could not be measured


def fleet_ratio(results: Results) -> float | None:
    one, five = results.fleet.get(1), results.fleet.get(max(FLEET_SIZES))
    if one is None or five is None or one.rc or five.rc:
        return None
    return five.seconds / one.seconds


def goals(results: Results) -> list[Goal]:
    m = results.measures
    found: list[Goal] = []

    def wall(name: str, limit: float, text: str) -> None:
        run = m.get(name)
        ok = run is not None and run.rc == 0
        figure = f"{run.wall:.1f} s" + ("" if ok else f" (exit {run.rc})") if run else "n/a"
        found.append(Goal(text, figure, ok and run is not None and run.wall <= limit))

    wall("deploy_warm", GOAL_DEPLOY, f"deploy within {GOAL_DEPLOY:.0f} s incl. 5 s verification")
    wall("rollback", GOAL_ROLLBACK, f"rollback within {GOAL_ROLLBACK:.0f} s")
    rec = m["degrade"].recovery if "degrade" in m else None
    found.append(
        Goal(
            f"recovery within {GOAL_RECOVERY:.0f} s",
            secs(rec),
            None if rec is None else rec <= GOAL_RECOVERY,
        )
    )
    ours = [m[n] for n in ("deploy_cold", "deploy_warm", "rollback") if n in m]
    naive = [m[n] for n in ("naive_cold", "naive_warm") if n in m]
    failed, total = sum(x.failed for x in ours), sum(x.total for x in ours)
    n_failed, n_total = sum(x.failed for x in naive), sum(x.total for x in naive)
    found.append(
        Goal(
            "0 failed requests (deploys + rollback) vs the naive method",
            f"{failed} of {total} vs naive {n_failed} of {n_total}",
            None if not ours else failed == 0,
        )
    )
    fr = fleet_ratio(results)
    one, five = results.fleet.get(1), results.fleet.get(max(FLEET_SIZES))
    figure = (
        f"{five.seconds:.1f} s vs {one.seconds:.1f} s = {times(fr)}x" if one and five else "n/a"
    )
    found.append(
        Goal(
            f"5 hosts within {GOAL_FLEET_RATIO} x the 1-host time",
            figure,
            None if fr is None else fr <= GOAL_FLEET_RATIO,
        )
    )
    return found


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[met]


def run_row(run: Measure | None, label: str) -> list[str]:
    if run is None:
        return [label, "n/a", "n/a", "n/a", "n/a", "n/a"]
    exit_note = "" if run.rc == 0 else f" (exit {run.rc})"
    return [
        label,
        f"{run.wall:.1f} s{exit_note}",
        secs(run.switch),
        secs(run.switch_server),
        f"{run.failed} / {run.total}",
        secs(run.unavailable),
    ]


def ratio_row(ours: Measure | None, naive: Measure | None, label: str) -> list[str]:
    if ours is None or naive is None:
        return [label, "n/a", "n/a", "", "n/a", "n/a"]
    return [
        label,
        times(ratio(ours.wall, naive.wall)),
        times(ratio(ours.switch, naive.switch)),
        "",
        times(ratio(ours.failed, naive.failed)),
        times(ratio(ours.unavailable, naive.unavailable)),
    ]


def time_line(run: Measure) -> str:
    slowest = "; ".join(f"{name.split(' : ')[-1]} {sec:.1f} s" for name, sec in run.slowest[:3])
    each = run.wall / run.tasks
    return f"- {run.label}: {run.tasks} task results, {each:.2f} s each on average; {slowest}"


def table(results: Results) -> list[str]:
    m = results.measures
    lines = [f"## make bench, {results.started} (total {duration(results.wall)})", ""]
    lines.append(
        "One host (melk-bench-1), load through its edge proxy: "
        f"{LOAD_WORKERS} clients, one request in four /slow?ms={LOAD_SLOW_MS}; "
        f"app_verify_seconds={VERIFY_SECONDS}. Machine: {os.cpu_count()} cores, load average "
        + " -> ".join(f"{x:.1f}" for x in results.load_average)
        + " (start -> end)."
    )
    lines.append("")
    head = [
        "run",
        "wall time",
        "start -> switch (load)",
        "(server)",
        "failed / total",
        "no service",
    ]
    rows = [
        run_row(m.get("deploy_cold"), "ours: deploy, image not on the host"),
        run_row(m.get("naive_cold"), "naive: down && up -d, image not on the host"),
        ratio_row(m.get("deploy_cold"), m.get("naive_cold"), "ratio ours / naive"),
        run_row(m.get("deploy_warm"), "ours: deploy, image already on the host"),
        run_row(m.get("naive_warm"), "naive: down && up -d, image already on the host"),
        ratio_row(m.get("deploy_warm"), m.get("naive_warm"), "ratio ours / naive"),
        run_row(m.get("rollback"), "ours: rollback to the previous release"),
        run_row(m.get("degrade"), "ours: release that degrades after the switch"),
    ]
    lines += markdown_table(head, rows)
    rec = m["degrade"].recovery if "degrade" in m else None
    lines += [
        "",
        "For the degrading release, (server) is when the proxy was switched back.",
    ]
    lines += [
        "",
        f"Recovery from the degrading release: {secs(rec)} "
        "(first failed request to the old version answering again).",
    ]
    lines += ["", "Where the time goes (task results per run, profile_tasks' slowest):", ""]
    lines += [time_line(run) for run in m.values() if run.tasks]
    lines += ["", "Fleet (one deploy, no load, image not on the hosts):", ""]
    one = results.fleet.get(1)
    fleet_rows = [
        [
            str(n),
            f"{t.seconds:.1f} s" + ("" if t.rc == 0 else f" (exit {t.rc})"),
            times(ratio(t.seconds, one.seconds if one else None)),
        ]
        for n, t in sorted(results.fleet.items())
    ]
    lines += markdown_table(["hosts", "deploy wall time", "x 1 host"], fleet_rows)
    lines += ["", "Goals (this machine, one host, image already in the registry):", ""]
    goal_rows = [[g.text, g.figure, verdict(g.met)] for g in goals(results)]
    lines += markdown_table(["goal", "figure", "verdict"], goal_rows)
    return lines


def to_json(results: Results) -> dict[str, Any]:
    def timed(t: Timed) -> dict[str, Any]:
        return {
            "command": t.command,
            "rc": t.rc,
            "seconds": round(t.seconds, 3),
            "tasks": task_count(t.output),
            "slowest_tasks": slowest_tasks(t.output),
            "log": str(t.log.relative_to(ROOT)),
        }

    return {
        "started": results.started,
        "wall_seconds": round(results.wall, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_start_end": results.load_average,
            "python": platform.python_version(),
        },
        "ansible": results.ansible,
        "settings": {
            "verify_seconds": VERIFY_SECONDS,
            "degrade_verify_seconds": DEGRADE_VERIFY_SECONDS,
            "load": {"workers": LOAD_WORKERS, "slow_ms": LOAD_SLOW_MS, "slow_every": 4},
            "bucket_seconds": BUCKET,
        },
        "releases": {n: {"version": RELEASES[n][0], "sha": s} for n, s in results.releases.items()},
        "runs": {name: asdict(m) for name, m in results.measures.items()},
        "other": {name: timed(t) for name, t in results.other.items()},
        "fleet": {str(n): timed(t) for n, t in sorted(results.fleet.items())},
        "goals": [asdict(g) for g in goals(results)],
    }


CHART_RUNS = (
    ("deploy_cold", "ours: ansible-playbook deploy.yml"),
    ("naive_cold", "naive: docker compose down && up -d"),
)
COLORS = ("#4c72b0", "#55a868", "#8172b2", "#ccb974")
FAILED_COLOR = "#c44e52"


def chart_ceiling(runs: Iterable[Measure]) -> float:
    """The y-axis top: room above the answered traffic. Failures come back at
    once and their clients retry at once, so their bars are cut at the top."""
    answered = [b.rps(sum(b.versions.values())) for run in runs for b in run.series]
    return max(10.0, 2.5 * max(answered, default=0.0))


def draw_run(ax: Any, run: Measure, title: str, ceiling: float) -> None:
    """Stacked bars per time bucket: answered by each version, then failed."""
    series = run.series
    versions = sorted(
        {v for b in series for v in b.versions},
        key=lambda v: min(b.start for b in series if v in b.versions),
    )
    x = [b.start for b in series]
    bottom = [0.0] * len(x)
    for index, version in enumerate(versions):
        heights = [b.rps(b.versions.get(version, 0)) for b in series]
        ax.bar(
            x,
            heights,
            BUCKET,
            bottom=bottom,
            align="edge",
            label=f"answered by {version}",
            color=COLORS[index % len(COLORS)],
        )
        bottom = [a + h for a, h in zip(bottom, heights, strict=True)]
    failed = [b.rps(b.failed) for b in series]
    shown = [max(0.0, min(f, ceiling - low)) for f, low in zip(failed, bottom, strict=True)]
    ax.bar(x, shown, BUCKET, bottom=bottom, align="edge", label="failed", color=FAILED_COLOR)
    if any(f > s for f, s in zip(failed, shown, strict=True)):
        ax.text(
            0.99,
            0.97,
            f"failed bars cut: up to {max(failed):.0f} requests/s",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
    ax.axvspan(0, run.wall, color="0.88", zorder=0, label="the command runs")
    if run.switch is not None:
        ax.axvline(
            run.switch,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"first answer by the new version ({run.switch:.1f} s)",
        )
    ax.set_ylim(0, ceiling)
    ax.set_title(f"{title}\n{run.failed} of {run.total} requests failed, wall {run.wall:.1f} s")
    ax.set_xlabel("seconds since the deploy started")
    ax.legend(loc="upper left", fontsize=8)


def chart(results: Results, path: Path) -> None:
    """Requests per second by version served, ours beside the naive method,
    during a deploy of a new release (image not on the host)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(results.measures.get(name), title) for name, title in CHART_RUNS]
    ceiling = chart_ceiling(run for run, _ in runs if run is not None)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, (run, title) in zip(axes, runs, strict=True):
        if run is None:
            ax.set_title(f"{title}: not measured")
        else:
            draw_run(ax, run, title, ceiling)
    axes[0].set_ylabel("requests per second")
    fig.suptitle("A deploy of a new release under load, one host (make bench)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ main


def main(argv: Sequence[str]) -> int:
    if argv:
        print(__doc__, file=sys.stdout if argv[0] in {"-h", "--help"} else sys.stderr)
        return 0 if argv[0] in {"-h", "--help"} else 2
    began = time.monotonic()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old in LOG_DIR.glob("*.log"):
        old.unlink()
    say("make bench: deploy benchmark on the local test bed")
    bench = Bench()
    try:
        bench.prepare()
        bench.start_servers()
        bench.provision()
        bench.ours_runs()
        bench.naive_runs()
        bench.fleet()
        bench.report(time.monotonic() - began)
    except (BenchError, TestbedError, subprocess.SubprocessError, OSError) as err:
        say()
        say(f"make bench FAILED at step {bench.step}/{bench.steps}: {err}")
        return 1
    except KeyboardInterrupt:
        say()
        say("make bench: interrupted")
        return 130
    finally:
        bench.clean()
    say(f"make bench: done in {duration(time.monotonic() - began)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
