"""Tools of the fault suite: watch a server's state while a playbook runs, act
at a point of the deploy (SIGKILL the controller, stop the registry), and keep
the rows of the results table. Load goes through Bed.traffic (testbed.load).

Points of a deploy are read from the server, never from Ansible's output (task
names and files change): the lock file, the image on the inner engine, the
release's container, the slot the switch file names (its `# slot` line), the
target the kernel really forwards the front address to (the `dnat to` of the
app's nftables chain), and nginx's processes (a switch never replaces them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from testbed import STATE_DIR
from testbed.app import UPSTREAM
from testbed.bed import GROUP_VARS, Bed
from testbed.load import Report

FAULTS_DIR = STATE_DIR / "faults"
RESULTS_FILE = FAULTS_DIR / "results.md"
BECOME_AUDIT = FAULTS_DIR / "become.jsonl"  # the become_audit callback's lines
PLUGINS = Path(__file__).resolve().parent / "plugins"
APP_DIR = "/opt/melk-ai"
LOCK = f"{APP_DIR}/deploy.lock"
CHAIN = "ip edge_proxy app-melk-ai"  # the app's nftables chain (edge_upstream.chain_name)
NFT = "/usr/sbin/nft"  # the real one: a case may put a slower one first on PATH
# Shell: the kernel's live target of the front address, IP:PORT (nothing when none).
LIVE_TARGET = (
    f"{NFT} list chain {CHAIN} 2>/dev/null"
    r" | sed -n 's/.*dnat to \([0-9.:]*\).*/\1/p' | head -n1"
)
# Shell: the slot the switch file names.
FILE_SLOT = rf"sed -n 's/^# slot \([a-z]*\).*/\1/p' {UPSTREAM} | head -n1"
# Shell: nginx's pids, master and workers, comma-separated.
NGINX_PIDS = "pgrep -d, nginx"

# One line per ~50 ms from inside the server: lock, image, container, the switch
# file's slot, the kernel's target, nginx's pids. One long `docker exec`, so
# polling starts no process on this side; the docker CLI runs only while the
# lock is held, and only for the point that needs it (it costs CPU the deploy
# under test needs too).
PROBE_LOOP = r"""
while :; do
  l=0; i=-; c=-
  if [ -e {lock} ]; then
    l=1
    if [ {image} = 1 ]; then
      i=0; docker image inspect {ref} >/dev/null 2>&1 && i=1
    fi
    if [ {container} = 1 ]; then
      c=$(docker ps -q --filter label=io.melk.sha={sha} --filter status=running | head -n1)
    fi
  fi
  s=$({file_slot})
  t=$({live_target})
  w=$({nginx_pids})
  echo "$l $i ${{c:--}} ${{s:--}} ${{t:--}} ${{w:--}}"
  sleep 0.05
done
"""

# A slow kernel apply, to open the window between the switch file's write and
# its apply: the switch module writes the file and runs `nft -f` on it within
# milliseconds, too quick for a 50 ms probe. This nft, first on root's PATH
# (sudo's secure_path), waits 3 s before an `nft -f` (the apply); `nft -c` (the
# check) and everything else run at once. Put in place and removed by the case.
SLOW_NFT = "/usr/local/sbin/nft"
SLOW_APPLY = (
    f'printf \'#!/bin/sh\\nif [ "$1" = -f ]; then sleep 3; fi\\nexec {NFT} "$@"\\n\''
    f" > {SLOW_NFT} && chmod 0755 {SLOW_NFT}"
)
FAST_APPLY = f"rm -f {SLOW_NFT}"


@dataclass(frozen=True)
class Probe:
    """What the server looked like at one moment of a deploy of `sha`."""

    at: float
    lock: bool
    image: bool | None  # None: not looked at
    container: str  # id of the running container of the new release, "" if none
    slot: str  # the slot the switch file names
    target: str  # IP:PORT the kernel forwards the front address to, "" if none
    nginx: frozenset[str]  # nginx's pids, master and workers

    @classmethod
    def parse(cls, line: str, at: float) -> Probe | None:
        parts = line.split()
        if len(parts) != 6:
            return None
        lock, image, container, slot, target, nginx = parts
        return cls(
            at,
            lock == "1",
            None if image == "-" else image == "1",
            "" if container == "-" else container,
            "" if slot == "-" else slot,
            "" if target == "-" else target,
            frozenset(p for p in nginx.split(",") if p != "-"),
        )


Check = Callable[[Probe, Probe], bool]  # (baseline, now) -> is this the point?


@dataclass(frozen=True)
class Point:
    """A point of a deploy, as seen on the server."""

    name: str
    check: Check
    image: bool = False  # needs the image probe
    container: bool = False  # needs the container probe


def _before_pull(_base: Probe, now: Probe) -> bool:
    return now.lock and now.image is False


def _after_start(base: Probe, now: Probe) -> bool:
    return bool(now.container) and now.slot == base.slot and now.target == base.target


def file_switched(base: Probe, now: Probe) -> bool:
    """The switch file names another slot than at the start."""
    return bool(now.slot) and now.slot != base.slot


def applied(base: Probe, now: Probe) -> bool:
    """The kernel forwards the front address to another target than at the start."""
    return bool(now.target) and now.target != base.target


# the run holds the lock and the new image is not on the host yet
BEFORE_PULL = Point("before the pull", _before_pull, image=True)
# the new release's container runs; the file and the kernel still name the old one
AFTER_START = Point("after the new container starts", _after_start, container=True)
# the switch file names the new slot; the kernel still forwards to the old release
BEFORE_APPLY = Point(
    "between the switch file write and its apply",
    lambda base, now: file_switched(base, now) and not applied(base, now),
)
# the switch file names the new slot and the kernel forwards to it
AFTER_SWITCH = Point(
    "right after the switch", lambda base, now: file_switched(base, now) and applied(base, now)
)


@dataclass
class Watch:
    """The probes seen, and the one at which the action was taken."""

    base: Probe | None = None
    hit: Probe | None = None
    probes: int = 0
    error: str = ""


class Watcher:
    """Reads PROBE_LOOP's lines in a thread; at `point` (plus `delay`), calls `act` once."""

    def __init__(
        self, bed: Bed, sha: str, point: Point, act: Callable[[], None], delay: float = 0
    ) -> None:
        script = PROBE_LOOP.format(
            lock=LOCK,
            image=int(point.image),
            container=int(point.container),
            ref=f"{GROUP_VARS['app_image']}:{sha}",
            sha=sha,
            file_slot=FILE_SLOT,
            live_target=LIVE_TARGET,
            nginx_pids=NGINX_PIDS,
        )
        self.proc = subprocess.Popen(
            ["docker", "exec", bed.server.name, "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.point, self.act, self.delay = point, act, delay
        self.watch = Watch()
        self.based = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.based.wait(30):
            self.stop()
            raise AssertionError("the server's state could not be read")

    def _run(self) -> None:
        assert self.proc.stdout is not None
        t0 = time.monotonic()
        for line in self.proc.stdout:
            probe = Probe.parse(line, time.monotonic() - t0)
            if probe is None:
                continue
            self.watch.probes += 1
            if self.watch.base is None:
                self.watch.base = probe
                self.based.set()
                continue
            if self.point.check(self.watch.base, probe):
                self.watch.hit = probe
                time.sleep(self.delay)
                self.act()
                return

    def stop(self, timeout: float = 5) -> Watch:
        self._thread.join(timeout)
        self.proc.kill()
        self.proc.wait(timeout=10)
        return self.watch


def descendants(pid: int) -> list[int]:
    """Every process below pid (from /proc), to wait for orphans after a kill."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                found.append(int(child))
                pending.append(int(child))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _status(pid)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


@dataclass
class Killed:
    """A playbook run killed with SIGKILL at a point of the deploy."""

    watch: Watch
    output: str
    seconds: float
    orphans: int  # worker processes that outlived the controller


def kill_at(bed: Bed, point: Point, sha: str, *extra: str, delay: float = 0) -> Killed:
    """Deploy `sha`, SIGKILL ansible-playbook at `point`, wait for its leftovers."""
    proc: subprocess.Popen[str] | None = None
    below: list[int] = []

    def kill() -> None:
        assert proc is not None
        below.extend(descendants(proc.pid))
        os.kill(proc.pid, signal.SIGKILL)

    start = time.monotonic()
    watcher = Watcher(bed, sha, point, kill, delay)
    proc = bed.spawn("deploy.yml", "-e", f"sha={sha}", *extra)
    try:
        output, _ = proc.communicate(timeout=300)
    finally:
        watch = watcher.stop()
    # A worker in the middle of a task finishes it and exits; wait for those.
    deadline = time.monotonic() + 60
    orphans = [p for p in below if alive(p)]
    while any(alive(p) for p in orphans) and time.monotonic() < deadline:
        time.sleep(0.1)
    bed.outputs.append(output)
    return Killed(watch, output, time.monotonic() - start, len(orphans))


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    case: str
    expected: str
    observed: str
    failed: str  # "failed/total" requests, or "—" when no traffic applies
    seconds: float
    nodeid: str
    outcome: str = "?"


@dataclass
class Results:
    """Rows of the suite's table; each test's pass/fail fills `outcome` at the end."""

    rows: list[Row] = field(default_factory=list)
    current: str = ""

    def add(
        self,
        case: str,
        expected: str,
        observed: str,
        report: Report | None = None,
        seconds: float = 0.0,
    ) -> None:
        failed = "—" if report is None else f"{len(report.failed)}/{report.total}"
        self.rows.append(Row(case, expected, observed, failed, seconds, self.current))

    def settle(self, nodeid: str, passed: bool) -> None:
        for row in self.rows:
            if row.nodeid == nodeid:
                row.outcome = "pass" if passed else "FAIL"

    def markdown(self, total_seconds: float) -> str:
        lines = [
            "| fault or input | expected | observed | failed/total requests | time | result |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            cells = [r.case, r.expected, r.observed, r.failed, f"{r.seconds:.1f} s", r.outcome]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        passed = sum(r.outcome == "pass" for r in self.rows)
        lines.append("")
        lines.append(
            f"{passed} of {len(self.rows)} rows pass; the suite took {total_seconds:.0f} s."
        )
        return "\n".join(lines) + "\n"
