"""make bench's steps on the test servers: start and provision them, run ours
and the naive method under load, the fleet deploys, then the report."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from testbed import ROOT, TestbedError, app, cpu, engine, images, registry, servers, wrk
from testbed import bench as bench_package
from testbed.app import UPSTREAM
from testbed.bench.chart import chart
from testbed.bench.config import (
    ANSIBLE_KEYS,
    BENCH_DIR,
    CONN,
    DEGRADE_VERIFY_SECONDS,
    FLEET_RELEASES,
    FLEET_ROUNDS,
    FLEET_SIZES,
    LOAD_LEAD,
    LOAD_SLOW_MS,
    LOAD_WORKERS,
    LOG_DIR,
    LONG_LEAD,
    LONG_MS,
    LONG_NAIVE_RUN,
    LONG_RUN,
    LONG_TRIGGER,
    NAIVE_DIR,
    NAIVE_PORT,
    PREFIX,
    RELEASES,
    SETTLE_LIMIT,
    SHAPE_LABELS,
    SHAPES,
    VERIFY_SECONDS,
    WRK,
    WRK_LEAD,
    WRK_LEAD_BEFORE,
    fleet_plan,
)
from testbed.bench.measure import (
    FleetDeploy,
    LongRequest,
    Measure,
    Results,
    cpu_split,
    measure,
    measure_wrk,
)
from testbed.bench.report import run_name, table, to_json
from testbed.console import INDENT, Status, duration, rel, say
from testbed.load import Traffic, served_chain, under_load
from testbed.playbook import (
    Command,
    Run,
    ansible_env,
    error_message,
    live_status,
    playbook_args,
)
from testbed.servers import Server


class BenchError(RuntimeError):
    """The bench could not run a step; the message says which and why."""


def bench_env() -> dict[str, str]:
    """The user's environment (ANSIBLE_STRATEGY etc. pass through) with the
    test bed's fixed settings and the profile_tasks callback added."""
    return ansible_env(BENCH_DIR / "cp", callbacks=["ansible.posix.profile_tasks"])


class Runner:
    """Numbers the bench's commands: each one's output goes to LOG_DIR/NN-LABEL.log."""

    def __init__(self) -> None:
        self.count = 0
        # where the machine's CPU went during the last command run (cpu_split), and
        # the seconds it was read over
        self.cpu: dict[str, float] = {}
        self.cpu_window = 0.0

    def command(
        self, label: str, args: Sequence[str], env: dict[str, str] | None, timeout: float
    ) -> Command:
        self.count += 1
        return Command(args, env, LOG_DIR / f"{self.count:02d}-{label}.log", timeout)

    def run(self, command: Command, status: Status | None = None) -> Run:
        say(f"{INDENT}$ {command.command}")
        before, started = cpu.read(), time.monotonic()
        run = command.run(status or command.progress)
        after, self.cpu_window = cpu.read(), time.monotonic() - started
        used = cpu.grown(before, after, cpu.container_names())
        self.cpu = cpu_split(used, run.cpu, self.cpu_window, os.cpu_count() or 1)
        log = rel(run.log) if run.log else "not kept"
        say(f"{INDENT}exit {run.rc} after {run.seconds:.1f} s (output: {log})")
        return run

    def playbook(self, label: str, name: str, inventory: Path, *extra: str) -> Command:
        timeout = 900 if name == "provision.yml" else 420
        return self.command(label, playbook_args(name, inventory, *extra), bench_env(), timeout)


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


def wait_for(traffic: Traffic, version: str, after: float, limit: float) -> None:
    """Let the load run until `version` answers a request sent after `after`
    (load clock), or `limit` seconds have passed."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(
            o.ok and o.version == version and o.start > after for o in traffic.snapshot().outcomes
        ):
            return
        time.sleep(0.2)


def served_version(url: str) -> str:
    """The version url/version answers with ("" when it does not answer 200)."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=5)
    try:
        conn.request("GET", "/version")
        resp = conn.getresponse()
        body = resp.read()
        return str(json.loads(body).get("version", "")) if resp.status == 200 else ""
    except (OSError, http.client.HTTPException, ValueError):
        return ""
    finally:
        conn.close()


def wait_served(url: str, version: str, limit: float) -> None:
    """Until `version` answers at url, or `limit` seconds have passed."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and served_version(url) != version:
        time.sleep(0.2)


def long_call(url: str) -> LongCall:
    """One /slow?ms=LONG_MS request on its own connection: (sent, seconds,
    status, version, error), sent on time.monotonic()'s clock."""
    parsed = urlparse(url)
    sent = time.monotonic()
    status, version, error = 0, "", ""
    conn = http.client.HTTPConnection(
        parsed.hostname or "127.0.0.1", parsed.port, timeout=LONG_MS / 1000 + 30
    )
    try:
        conn.request("GET", f"/slow?ms={LONG_MS}", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        status = resp.status
        try:
            version = str(json.loads(body).get("version", ""))
        except ValueError:
            version = ""
    except (OSError, http.client.HTTPException) as err:
        error = type(err).__name__
    finally:
        conn.close()
    return sent, time.monotonic() - sent, status, version, error


LongCall = tuple[float, float, int, str, str]


def long_call_at(
    url: str, command: Command, trigger: str, ended: threading.Event
) -> LongCall | None:
    """The long request, sent once the command is at a task named with
    `trigger` (None if it ended first)."""
    while trigger not in command.task:
        if ended.wait(0.05):
            return None
    return long_call(url)


@contextmanager
def long_request(
    url: str, command: Command, enabled: bool, trigger: str | None
) -> Iterator[list[Future[LongCall | None]]]:
    """With `enabled`, the long request is sent while the body runs the
    command: when it reaches a task named with `trigger`, or with no trigger,
    LONG_LEAD seconds before it starts. The block is left once it has its
    answer."""
    if not enabled:
        yield []
        return
    ended = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future: Future[LongCall | None]
        if trigger is None:
            future = pool.submit(long_call, url)
            time.sleep(LONG_LEAD)
        else:
            future = pool.submit(long_call_at, url, command, trigger, ended)
        try:
            yield [future]
        finally:
            ended.set()
        future.result(timeout=LONG_MS / 1000 + 60)


def long_result(futures: list[Future[LongCall | None]], timed: Run) -> LongRequest | None:
    if not futures:
        return None
    call = futures[0].result()
    if call is None:
        say(f"{INDENT}long request: not sent, the command never reached {LONG_TRIGGER!r}")
        return None
    sent, seconds, status, version, error = call
    found = LongRequest(
        f"/slow?ms={LONG_MS}", sent - timed.started, seconds, status, version, error
    )
    say(f"{INDENT}long request: HTTP {status} {version or error} after {seconds:.1f} s")
    return found


def run_under_load(
    url: str,
    runner: Runner,
    command: Command,
    expect: str,
    long: bool = False,
    trigger: str | None = None,
) -> tuple[Run, Traffic, LongRequest | None]:
    """The command while the new-connection load runs through url; the load
    goes on until `expect` serves again (bounded), and the long request (if
    asked) has its answer."""
    with (
        under_load(
            url, lead=LOAD_LEAD, max_seconds=600, workers=LOAD_WORKERS, slow_ms=LOAD_SLOW_MS
        ) as traffic,
        long_request(url, command, long, trigger) as futures,
    ):
        run = runner.run(command, live_status(traffic, command))
        wait_for(traffic, expect, traffic.clock(time.monotonic()), SETTLE_LIMIT)
    say(f"{INDENT}load: {traffic.summary()} ({served_chain(traffic)})")
    return run, traffic, long_result(futures, run)


def run_under_wrk(
    url: str,
    runner: Runner,
    command: Command,
    expect: str,
    long: bool = False,
    trigger: str | None = None,
) -> tuple[Run, wrk.WrkResult, list[wrk.Sample], float, LongRequest | None]:
    """The command under one wrk run that times every answer (wrk is never restarted
    while it runs): WRK_LEAD_BEFORE seconds of it before the command, then until
    `expect` serves again (bounded), and WRK_LEAD seconds more. Returns the run, wrk's
    report, the answers it timed and when it started (unix seconds)."""
    target = f"{url}/version"
    samples = command.log.with_suffix(".wrk.txt") if command.log else LOG_DIR / "wrk.txt"
    samples.unlink(missing_ok=True)
    process = subprocess.Popen(  # nosec B603: a fixed command line
        wrk.command(target, samples=samples),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    origin = time.time()
    try:
        time.sleep(WRK_LEAD_BEFORE)
        with long_request(url, command, long, trigger) as futures:
            run = runner.run(command)
            wait_served(url, expect, SETTLE_LIMIT)
        time.sleep(WRK_LEAD)
    finally:
        process.send_signal(signal.SIGINT)  # wrk stops, prints its report, writes samples
        output, _ = process.communicate(timeout=60)
    result = wrk.parse(output)
    answers = wrk.read_samples(samples)
    say(f"{INDENT}{result.summary()}; {len(answers)} answers timed ({rel(samples)})")
    return run, result, answers, origin, long_result(futures, run)


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
        group_vars = servers.group_vars({"APP_GREETING": "hello from make bench"}, VERIFY_SECONDS)
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
        timed = self.runner.run(self.runner.playbook("provision", "provision.yml", inventory))
        self.results.other["provision"] = timed
        if timed.rc != 0:
            raise BenchError(f"provision.yml failed: {error_message(timed.output)}")
        sha = self.releases["v1"]
        timed = self.runner.run(
            self.runner.playbook("first-deploy", "deploy.yml", inventory, "-e", f"sha={sha}")
        )
        self.results.other["first_deploy"] = timed
        if timed.rc != 0:
            raise BenchError(f"the first deploy failed: {error_message(timed.output)}")

    def timed_run(
        self,
        name: str,
        label: str,
        shape: str,
        url: str,
        command: Command,
        versions: tuple[str, str, str],
        verify: float | None,
        upstream: bool = True,
    ) -> None:
        """One command under one load shape; versions: (new, old, expected after)."""
        say(f"{INDENT}{label}, under {SHAPE_LABELS[shape]}")
        new, old, expect = versions
        long = name in {LONG_RUN, LONG_NAIVE_RUN}
        # ours: the long request goes when the playbook reaches the health gate, the
        # step right before the switch; the naive method has no steps to wait for
        trigger = LONG_TRIGGER if upstream else None
        found: Measure
        if shape == WRK:
            timed, result, samples, origin, call = run_under_wrk(
                url, self.runner, command, expect, long, trigger
            )
            mtime = upstream_mtime(self.host.name) if upstream else None
            found = measure_wrk(
                name, label, timed, result, samples, origin, new, mtime, verify, call
            )
        else:
            timed, report, call = run_under_load(url, self.runner, command, expect, long, trigger)
            mtime = upstream_mtime(self.host.name) if upstream else None
            found = measure(name, label, timed, report, report.t0, new, old, mtime, verify, call)
        found.cpu, found.cpu_window = self.runner.cpu, self.runner.cpu_window
        self.results.measures[name] = found

    def ours(
        self, name: str, label: str, shape: str, playbook: str, new: str, old: str, *extra: str
    ) -> None:
        command = self.runner.playbook(name, playbook, self.inventory(1), *extra)
        degrade = name.startswith("degrade")
        versions = (self.version(new), self.version(old), self.version(old if degrade else new))
        # the degrading release's watch ends at its first failure: no overhead figure
        verify = None if degrade else VERIFY_SECONDS
        self.timed_run(name, label, shape, self.host.url, command, versions, verify)

    def pull(self, release: str, hosts: int = 1) -> None:
        """The release's image onto the first `hosts` servers (untimed, in parallel)."""
        with ThreadPoolExecutor(max_workers=hosts) as pool:
            list(
                pool.map(
                    lambda server: sh(server.name, f"docker pull -q {self.image(release)}"),
                    self.servers[:hosts],
                )
            )

    # 4
    def ours_runs(self) -> None:
        self.begin(
            f"Ours on {self.host.name} under {' and '.join(SHAPES)} load: deploys, rollbacks, "
            "degrading releases"
        )
        cold = self.releases["cold"]
        self.ours(
            "deploy_cold",
            "deploy, image not on the host",
            CONN,
            "deploy.yml",
            "cold",
            "v1",
            "-e",
            f"sha={cold}",
        )
        for shape in SHAPES:
            release, degrade = f"deploy-{shape}", f"degrade-{shape}"
            self.pull(release)
            self.ours(
                run_name("deploy", shape),
                "deploy, image on the host",
                shape,
                "deploy.yml",
                release,
                "cold",
                "-e",
                f"sha={self.releases[release]}",
            )
            self.ours(
                run_name("rollback", shape),
                "rollback to the previous release",
                shape,
                "rollback.yml",
                "cold",
                release,
            )
            self.pull(degrade)
            self.ours(
                run_name("degrade", shape),
                "deploy of a release that degrades after the switch",
                shape,
                "deploy.yml",
                degrade,
                "cold",
                "-e",
                f"sha={self.releases[degrade]}",
                "-e",
                f"app_verify_seconds={DEGRADE_VERIFY_SECONDS}",
            )

    def naive(self, name: str, label: str, shape: str, release: str, old: str) -> None:
        url = f"http://127.0.0.1:{published_port(self.host.name, NAIVE_PORT)}"
        script = (
            f"cd ~/{NAIVE_DIR} && echo APP_IMAGE={self.image(release)} > .env"
            " && docker compose down && docker compose up -d"
        )
        command = self.runner.command(name, [*servers.ssh_command(self.host), script], None, 600)
        new = self.version(release)
        versions = (new, self.version(old), new)
        self.timed_run(name, label, shape, url, command, versions, None, upstream=False)

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
        self.naive("naive_cold", "naive, image not on the host", CONN, "naive-cold", "v1")
        old = "naive-cold"
        for shape in SHAPES:
            release = f"naive-{shape}"
            self.pull(release)
            self.naive(run_name("naive", shape), "naive, image on the host", shape, release, old)
            old = release
        sh(self.host.name, f"cd {home} && docker compose down", check=False)

    # 6
    def fleet(self) -> None:
        # The images are on the hosts first, as for the one-host goals: the test
        # servers share this machine's cores and disk, so five pulls at once
        # would measure them, where five real servers pull each on their own.
        self.begin(
            f"Fleet scaling: {FLEET_ROUNDS} deploys to each of {', '.join(map(str, FLEET_SIZES))} "
            "hosts, in turns (no load, images on the hosts)"
        )
        for release in FLEET_RELEASES:
            self.pull(release, max(FLEET_SIZES))
        for count, release in fleet_plan():
            sha = self.releases[release]
            inventory = self.inventory(count)
            timed = self.runner.run(
                self.runner.playbook(f"fleet-{count}", "deploy.yml", inventory, "-e", f"sha={sha}")
            )
            deploy = FleetDeploy(timed, self.runner.cpu)
            self.results.fleet.setdefault(count, []).append(deploy)

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
    env = bench_env()
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


def main(argv: Sequence[str]) -> int:
    if argv:
        print(bench_package.__doc__, file=sys.stdout if argv[0] in {"-h", "--help"} else sys.stderr)
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
