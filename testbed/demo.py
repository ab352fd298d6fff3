"""make demo: the main job on a local sandbox server, from nothing to a rollback.

    python -m testbed.demo          run the demo (what `make demo` does)
    python -m testbed.demo clean    remove the sandbox (what `make demo-clean` does)

It prepares the test bed (Docker engine, cached base images, a local registry),
builds three releases of the sample app (v1, v2 and a broken one), starts a
sandbox server (a systemd container with SSH and its own Docker engine) whose
edge proxy answers on http://127.0.0.1:$DEMO_PORT (8080 by default), and runs the
project's playbooks against it as a user would: provision, deploy v1, deploy v2
under live traffic, deploy the broken release (rolled back automatically), roll
back to v1 by sha prefix, status. It exits non-zero, saying what, when a step
does not behave as expected. Full Ansible output goes to .testbed/demo/*.log.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testbed import ROOT, STATE_DIR, TestbedError, app, engine, images, registry, servers
from testbed.load import Load, Report

SERVER = "melk-demo"  # the e2e servers are melk-e2e-*: both can run at once
DEMO_DIR = STATE_DIR / "demo"
INVENTORY = DEMO_DIR / "inventory.json"
REGISTRY_MARK = DEMO_DIR / "registry-started.json"
STEPS = 9
DEFAULT_PORT = 8080
BROKEN_ENV = {"APP_DEGRADE_AFTER_REQUESTS": "100"}
# The broken release's post-switch watch: the live traffic (about 30 requests a
# second) breaks it within a few seconds; the watch stops at the first failure.
BROKEN_VERIFY_SECONDS = 15
VERIFY_SECONDS = 5
PLAYBOOK_TIMEOUT = {"provision.yml": 900.0}
INDENT = "    "


class DemoError(RuntimeError):
    """A step did not behave as expected; the message says how."""


# ----------------------------------------------------------------- output


def say(line: str = "") -> None:
    print(line, flush=True)


def rel(path: Path) -> str:
    """A path as the user sees it from the repository root."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


# A status line and what must change for it to be printed again without a terminal.
Status = Callable[[], tuple[str, str]]


class Ticker:
    """One status line: on a terminal rewritten in place every second; otherwise
    (a log, a CI console) a new line every few seconds when it says something new."""

    def __init__(self, status: Status) -> None:
        self.status = status
        self.tty = sys.stdout.isatty()
        self.every = 1.0 if self.tty else 5.0
        self._last = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _show(self, text: str, key: str) -> None:
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            sys.stdout.write("\r\033[K" + clip(text, width))
            sys.stdout.flush()
        elif key != self._last:
            self._last = key
            say(clip(text, 110))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._show(*self.status())

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.tty:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()


# ------------------------------------------------------------- playbooks


@dataclass
class Run:
    command: str
    rc: int
    output: str
    seconds: float
    log: Path


class Playbook:
    """One ansible-playbook run from the repository root, as a user types it;
    its output goes to a log file, and the task it is at can be read while it runs."""

    def __init__(self, step: int, label: str, name: str, *extra: str) -> None:
        self.args = ["ansible-playbook", "-i", rel(INVENTORY), f"playbooks/{name}", *extra]
        self.log = DEMO_DIR / f"{step}-{label}.log"
        self.timeout = PLAYBOOK_TIMEOUT.get(name, 420.0)
        self.task = "starting"
        self.started = 0.0

    @property
    def command(self) -> str:
        return shlex.join(self.args)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def run(self, status: Status | None = None) -> Run:
        say(f"{INDENT}$ {self.command}")
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(DEMO_DIR / "cp"),
        )
        binary = str(ROOT / ".venv" / "bin" / self.args[0])
        lines: list[str] = []
        self.started = time.monotonic()
        with (
            self.log.open("w") as log,
            Ticker(status or self.progress),
            subprocess.Popen(
                [binary, *self.args[1:]],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as proc,
        ):
            watchdog = threading.Timer(self.timeout, proc.kill)
            watchdog.daemon = True
            watchdog.start()
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                lines.append(line)
                match = re.match(r"TASK \[(?:[\w.-]+ : )?(.*)\] \*+", line)
                if match and not match.group(1).startswith("Validating arguments"):
                    self.task = match.group(1)
            rc = proc.wait()
            watchdog.cancel()
        seconds = self.elapsed()
        if rc < 0:
            lines.append(f"\n(the demo stopped this run after {self.timeout:.0f} s)\n")
        return Run(self.command, rc, "".join(lines), seconds, self.log)

    def progress(self) -> tuple[str, str]:
        return f"{INDENT}... {duration(self.elapsed())}: {self.task}", self.task


def host_results(output: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(status, host, result) of every task result in the default callback's
    output (results in YAML, as ansible.cfg asks)."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    lines = output.splitlines()
    head = re.compile(r"^(ok|changed|fatal|failed|skipping): \[([^\]]+)\].*?=>\s*(.*)$")
    for i, line in enumerate(lines):
        match = head.match(line)
        if not match:
            continue
        status, host, inline = match.groups()
        text = inline
        if not inline:
            block = []
            for nxt in lines[i + 1 :]:
                if not nxt.startswith("    ") and nxt.strip():
                    break
                if not nxt.strip():
                    break
                block.append(nxt[4:])
            text = "\n".join(block)
        try:
            data = yaml.safe_load(text) if text else {}
        except yaml.YAMLError:
            data = {"msg": text}
        if isinstance(data, dict):
            found.append((status, host, data))
    return found


def error_message(output: str) -> str:
    """The message of the last failed task (the run's verdict)."""
    failures = [r for r in host_results(output) if r[0] in {"fatal", "failed"}]
    if not failures:
        return ""
    return " ".join(str(failures[-1][2].get("msg", "")).split())


def recap(output: str) -> list[str]:
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("PLAY RECAP"):
            return [" ".join(x.split()) for x in lines[i + 1 :] if x.strip()]
    return []


def show_recap(run: Run) -> None:
    for line in recap(run.output):
        say(f"{INDENT}recap: {line}")
    say(f"{INDENT}({duration(run.seconds)}, full output: {rel(run.log)})")


def wrap(text: str, width: int = 92, prefix: str = INDENT + "  ") -> None:
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            say(prefix + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        say(prefix + line)


# ------------------------------------------------------------- live load


def served_chain(report: Report, min_run: int = 3) -> str:
    """The versions that served, in order: "v1 -> v2", "v2 -> v3-broken -> v2".
    Runs of fewer than min_run answers (in-flight stragglers around a switch)
    are left out."""
    runs: list[list[Any]] = []
    for outcome in report.outcomes:
        if not outcome.ok:
            continue
        if runs and runs[-1][0] == outcome.version:
            runs[-1][1] += 1
        else:
            runs.append([outcome.version, 1])
    chain: list[str] = []
    for index, (version, count) in enumerate(runs):
        if count < min_run and index not in {0, len(runs) - 1}:
            continue
        if not chain or chain[-1] != version:
            chain.append(version)
    return " -> ".join(chain) or "nothing yet"


def live_line(load: Load, playbook: Playbook) -> tuple[str, str]:
    snap = load.snapshot()
    text = (
        f"{INDENT}live: {snap.total} requests, {len(snap.failed)} failed, "
        f"serving {served_chain(snap)}   [{duration(playbook.elapsed())}: {playbook.task}]"
    )
    return text, text


def under_load(url: str, playbook: Playbook) -> tuple[Run, Report]:
    """The playbook while a load generator sends requests through the edge
    proxy (a second of traffic before and after), as the e2e tests do."""
    load = Load(url, workers=4, slow_ms=400, max_seconds=600).start()
    try:
        time.sleep(1.0)
        run = playbook.run(lambda: live_line(load, playbook))
        time.sleep(1.0)
    finally:
        report = load.stop()
    say(f"{INDENT}total: {report.summary()} ({served_chain(report)})")
    return run, report


# ------------------------------------------------------------------ steps


def demo_port() -> int:
    raw = os.environ.get("DEMO_PORT", str(DEFAULT_PORT))
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise DemoError(f"DEMO_PORT must be a TCP port number, not {raw!r}")
    return int(raw)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def served_version(port: int) -> str:
    """The version the edge proxy serves now."""
    try:
        url = f"http://127.0.0.1:{port}/version"
        with urllib.request.urlopen(url, timeout=5) as resp:  # nosec B310
            return str(json.loads(resp.read())["version"])
    except (OSError, ValueError, KeyError) as err:
        return f"nothing ({type(err).__name__})"


def group_vars() -> dict[str, object]:
    """The e2e tests' inventory variables, with a demo value in app_env."""
    return {
        "app_image": app.pull_repository(),
        "app_env": {"APP_GREETING": "hello from make demo"},
        "app_verify_seconds": VERIFY_SECONDS,
        "docker_daemon_options": {"insecure-registries": [registry.pull_address()]},
    }


def listener_pids() -> dict[str, int]:
    """The registry's listeners that run now, by name -> pid."""
    pids: dict[str, int] = {}
    for name in ("loopback", "bridge"):
        try:
            pid = int((registry.DIR / f"{name}.pid").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            continue
        pids[name] = pid
    return pids


def start_registry() -> None:
    """Start the registry and remember the listeners this demo started (and the
    ones an earlier demo run started that still run), for `clean`."""
    before = listener_pids()
    registry.start()
    now = listener_pids()
    try:
        earlier = json.loads(REGISTRY_MARK.read_text())
    except (OSError, ValueError):
        earlier = {}
    ours = {n: p for n, p in earlier.items() if now.get(n) == p}
    ours.update({n: p for n, p in now.items() if before.get(n) != p})
    REGISTRY_MARK.write_text(json.dumps(ours))


class Demo:
    def __init__(self) -> None:
        self.port = demo_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.releases: dict[str, str] = {}
        self.step = 0
        self.sandbox_up = False

    def begin(self, title: str) -> None:
        self.step += 1
        say()
        say(f"==> [{self.step}/{STEPS}] {title}")

    def done(self, text: str) -> None:
        say(f"{INDENT}ok: {text}")

    def expect(self, condition: bool, problem: str, run: Run | None = None) -> None:
        if condition:
            return
        if run is not None:
            message = error_message(run.output)
            if message:
                say(f"{INDENT}the playbook said:")
                wrap(message)
            problem += f" (full output: {rel(run.log)})"
        raise DemoError(problem)

    # 1
    def prepare(self) -> None:
        self.begin("Preparing the Docker engine, base images, registry and sample releases")
        engine.ensure_engine()
        images.build_all(["server", "app-base"])
        start_registry()
        self.releases = {
            "v1": app.build_release("v1"),
            "v2": app.build_release("v2"),
            "v3-broken": app.build_release("v3-broken", "degrade", BROKEN_ENV),
        }
        for version, sha in self.releases.items():
            say(f"{INDENT}release {version:<10} sha {sha}")
        say(f"{INDENT}(v3-broken passes the health gate, then fails every request once it")
        say(f"{INDENT} has answered 100: it breaks after it gets traffic)")
        self.done(f"releases pushed to the local registry as {app.pull_repository()}:<sha>")

    # 2
    def start_server(self) -> None:
        self.begin(f"Starting the sandbox server {SERVER} (its edge proxy on {self.url})")
        servers.remove(SERVER)  # afresh on every run
        if not port_free(self.port):
            raise DemoError(
                f"port {self.port} on 127.0.0.1 is in use; free it or choose another one, "
                f"e.g. DEMO_PORT={self.port + 1} make demo"
            )
        server = servers.start(
            SERVER, images.SERVER_TRIXIE.ref, http_publish=f"127.0.0.1:{self.port}:80"
        )
        self.sandbox_up = True
        servers.write_inventory(INVENTORY, [server], group_vars())
        say(f"{INDENT}a Debian 13 systemd container with sshd; user deploy (sudo), no Docker yet")
        say(f"{INDENT}inventory: {rel(INVENTORY)} (ssh deploy@127.0.0.1 -p {server.ssh_port})")
        self.done(f"{SERVER} answers over SSH")

    # 3
    def provision(self) -> None:
        self.begin(f"Provisioning {SERVER}: Docker Engine + Compose v2, edge proxy, deploy dirs")
        run = Playbook(self.step, "provision", "provision.yml").run()
        show_recap(run)
        self.expect(run.rc == 0, f"provision.yml failed (exit {run.rc})", run)
        self.done(f"{SERVER} is ready for deploys")

    # 4
    def deploy_v1(self) -> None:
        self.begin("Deploying v1, the first release")
        start_registry()  # up again if someone stopped it meanwhile
        sha = self.releases["v1"]
        run = Playbook(self.step, "deploy-v1", "deploy.yml", "-e", f"sha={sha}").run()
        show_recap(run)
        self.expect(run.rc == 0, f"deploying v1 failed (exit {run.rc})", run)
        serving = served_version(self.port)
        self.expect(serving == "v1", f"after deploying v1, {self.url} serves {serving}")
        self.done(f"v1 serves on {self.url}")

    # 5
    def deploy_v2(self) -> None:
        self.begin("Deploying v2 under live traffic")
        start_registry()  # up again if someone stopped it meanwhile
        say(f"{INDENT}4 clients send requests through the edge proxy the whole time,")
        say(f"{INDENT}a quarter of them slow ones (400 ms) that are in flight during the switch")
        sha = self.releases["v2"]
        playbook = Playbook(self.step, "deploy-v2", "deploy.yml", "-e", f"sha={sha}")
        run, report = under_load(self.url, playbook)
        show_recap(run)
        self.expect(run.rc == 0, f"deploying v2 failed (exit {run.rc})", run)
        self.expect(report.total > 0, "the live traffic sent no request")
        self.expect(
            not report.failed, f"{len(report.failed)} requests failed during the v2 deploy", run
        )
        self.expect(
            report.versions["v1"] > 0 and report.versions["v2"] > 0,
            f"the traffic should have seen v1, then v2: {report.summary()}",
        )
        serving = served_version(self.port)
        self.expect(serving == "v2", f"after deploying v2, {self.url} serves {serving}")
        self.done(f"v2 serves; all {report.total} requests answered, none failed")

    # 6
    def deploy_broken(self) -> None:
        self.begin("Deploying a broken release (v3-broken) under live traffic")
        start_registry()  # up again if someone stopped it meanwhile
        watch, usual = BROKEN_VERIFY_SECONDS, VERIFY_SECONDS
        say(f"{INDENT}expected: it passes the health gate, takes traffic, breaks after 100")
        say(f"{INDENT}requests, and the watch of the public endpoint after the switch rolls")
        say(f"{INDENT}back to v2 by itself. The watch runs up to {watch} s here, not the")
        say(f"{INDENT}inventory's {usual} s, so a slow machine sees the break too; it stops")
        say(f"{INDENT}at the first failure.")
        sha = self.releases["v3-broken"]
        playbook = Playbook(
            self.step,
            "deploy-broken",
            "deploy.yml",
            "-e",
            f"sha={sha}",
            "-e",
            f"app_verify_seconds={BROKEN_VERIFY_SECONDS}",
        )
        run, report = under_load(self.url, playbook)
        show_recap(run)
        message = error_message(run.output)
        self.expect(run.rc != 0, "deploying the broken release should have failed, but it passed")
        say(f"{INDENT}the playbook failed (exit {run.rc}), as it should; its final message:")
        wrap(message or "(none found; see the log)")
        self.expect(
            "Rolled back automatically" in run.output,
            "the playbook failed, but did not say it rolled back automatically",
            run,
        )
        serving = served_version(self.port)
        self.expect(serving == "v2", f"after the automatic rollback, {self.url} serves {serving}")
        if report.failed:
            last = max(o.end for o in report.failed)
            after = [o for o in report.outcomes if o.start > last]
            self.expect(
                all(o.ok and o.version == "v2" for o in after),
                "requests kept failing (or were not served by v2) after the rollback",
            )
            first = min(o.end for o in report.failed)
            back = [o.end for o in after if o.ok]
            recovery = f"{min(back) - first:.1f} s" if back else "?"
            say(
                f"{INDENT}{len(report.failed)} requests failed once v3-broken broke; "
                f"{recovery} from its first failure to v2 serving again"
            )
        if report.versions["v3-broken"] == 0:
            say(f"{INDENT}note: v3-broken got no traffic this time (it failed before the switch)")
        self.done("v2 serves again, rolled back automatically; no failed request since")

    # 7
    def rollback_v1(self) -> None:
        self.begin("Rolling back to v1 by sha prefix under live traffic")
        prefix = self.releases["v1"][:8]
        say(f"{INDENT}v1's image is still on the host: no pull, the same health gate and switch")
        playbook = Playbook(self.step, "rollback-v1", "rollback.yml", "-e", f"sha={prefix}")
        run, report = under_load(self.url, playbook)
        show_recap(run)
        self.expect(run.rc == 0, f"rolling back to v1 failed (exit {run.rc})", run)
        self.expect(
            not report.failed, f"{len(report.failed)} requests failed during the rollback", run
        )
        serving = served_version(self.port)
        self.expect(serving == "v1", f"after rolling back to v1, {self.url} serves {serving}")
        self.done(f"v1 serves again; all {report.total} requests answered, none failed")

    # 8
    def status(self) -> None:
        self.begin(f"Status of {SERVER}")
        run = Playbook(self.step, "status", "status.yml").run()
        self.expect(run.rc == 0, f"status.yml failed (exit {run.rc})", run)
        shown = False
        for status, _host, result in host_results(run.output):
            msg = result.get("msg")
            if (
                status == "ok"
                and isinstance(msg, list)
                and any(str(x).startswith("current") for x in msg)
            ):
                for line in msg:
                    say(f"{INDENT}  {line}")
                shown = True
        self.expect(shown, f"status.yml printed no status (full output: {rel(run.log)})")
        self.done(f"status read ({duration(run.seconds)})")

    # 9
    def epilogue(self) -> None:
        self.begin("Your turn: reach the app, deploy again, tear down")
        v2 = self.releases["v2"]
        inv = rel(INVENTORY)
        say(f"{INDENT}The app answers on {self.url}:")
        say(f"{INDENT}  curl {self.url}/version")
        say(f"{INDENT}Deploy again from this directory (the tools are in .venv/bin:")
        say(f"{INDENT}run `. .venv/bin/activate` first):")
        say(f"{INDENT}  ansible-playbook -i {inv} playbooks/deploy.yml -e sha={v2}")
        say(f"{INDENT}  ansible-playbook -i {inv} playbooks/rollback.yml")
        say(f"{INDENT}  ansible-playbook -i {inv} playbooks/status.yml")
        say(f"{INDENT}Tear the sandbox down (the cached base images stay):")
        say(f"{INDENT}  make demo-clean")

    def run(self) -> None:
        DEMO_DIR.mkdir(parents=True, exist_ok=True)
        for step in (
            self.prepare,
            self.start_server,
            self.provision,
            self.deploy_v1,
            self.deploy_v2,
            self.deploy_broken,
            self.rollback_v1,
            self.status,
            self.epilogue,
        ):
            step()


def main_demo() -> int:
    started = time.monotonic()
    say(f"make demo: the main job on a sandbox server, in {STEPS} steps")
    demo: Demo | None = None
    try:
        demo = Demo()
        demo.run()
    except (DemoError, TestbedError) as err:
        step = f" at step {demo.step}/{STEPS}" if demo and demo.step else ""
        say()
        say(f"make demo FAILED{step}: {err}")
        if demo and demo.sandbox_up:
            say(f"The sandbox {SERVER} is left as it is to look at; `make demo-clean` removes it.")
        return 1
    except KeyboardInterrupt:
        say()
        say("make demo: interrupted; `make demo-clean` removes the sandbox")
        return 130
    say()
    took = duration(time.monotonic() - started)
    say(f"make demo: all {STEPS} steps behaved as expected in {took}")
    return 0


def main_clean() -> int:
    """Remove the sandbox server and its engine's volume, stop the registry
    listeners the demo started; the cached base images and pushed releases stay."""
    servers.remove(SERVER)
    say(f"demo-clean: removed the sandbox server {SERVER} and its volume {SERVER}-docker")
    try:
        ours = {str(n): int(p) for n, p in json.loads(REGISTRY_MARK.read_text()).items()}
    except (OSError, ValueError):
        ours = {}
    running = listener_pids()
    stopped = 0
    for name, pid in ours.items():
        if running.get(name) != pid:
            continue
        if not registry.stop_listener(name, pid):
            continue
        say(f"demo-clean: stopped the registry listener the demo started ({name}, pid {pid})")
        stopped += 1
    if not stopped:
        say("demo-clean: no registry listener the demo started runs; the registry is left as it is")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    say(f"demo-clean: removed {rel(DEMO_DIR)}; cached base images kept")
    return 0


def main(argv: Sequence[str]) -> int:
    if not argv:
        return main_demo()
    if argv[0] == "clean":
        return main_clean()
    print(__doc__, file=sys.stderr if argv[0] not in {"-h", "--help"} else sys.stdout)
    return 0 if argv[0] in {"-h", "--help"} else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
