"""The figures of one timed command under load (pure: from its outcomes, or
from wrk's report and the answers it timed)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from testbed.bench.config import BUCKET, CONN, SWITCH_WINDOW, WRK, WRK_WARMUP
from testbed.console import rel
from testbed.cpu import NESTED, SSH
from testbed.load import Outcome, Report, first_answer, recovery_seconds, unavailable_seconds
from testbed.playbook import Run, slowest_tasks, task_count
from testbed.wrk import Sample, WrkResult

FAST_PATH = "/version"  # the new-connection load's fast requests (latency is theirs)


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


def overhead(wall: float, verify: float | None) -> float | None:
    """A playbook's wall time minus its public watch (app_verify_seconds): the
    time the deploy or rollback itself costs. None for a run without a watch."""
    return None if verify is None else wall - verify


# ------------------------------------------------------------------ latency


@dataclass(frozen=True)
class Latency:
    """Percentiles of a set of requests, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def text(self) -> str:
        return f"{self.p50_ms:.0f} / {self.p99_ms:.0f} / {self.max_ms:.0f}"


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile (a value of the set, as wrk reports): the
    smallest value with at least pct % of the values at or below it."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_of(outcomes: Iterable[Outcome]) -> Latency | None:
    """Latency of the answered fast requests among outcomes (a request with no
    HTTP answer has no latency, as in wrk; slow ones sleep on purpose)."""
    values = [(o.end - o.start) * 1000 for o in outcomes if o.status and o.path == FAST_PATH]
    if not values:
        return None
    return Latency(
        len(values),
        round(percentile(values, 50), 3),
        round(percentile(values, 99), 3),
        round(max(values), 3),
    )


def split_latency(
    outcomes: Sequence[Outcome], start: float, switch: float | None, window: float = SWITCH_WINDOW
) -> tuple[Latency | None, Latency | None]:
    """(before, during) on the load's clock: before is the requests sent before
    the command started (the load's lead); during, those sent within `window`
    seconds either side of the switch (or, with no switch seen, while the
    command ran, from `start` on)."""
    before = latency_of(o for o in outcomes if o.start < start)
    if switch is None:
        during = latency_of(o for o in outcomes if o.start >= start)
    else:
        during = latency_of(o for o in outcomes if switch - window <= o.start < switch + window)
    return before, during


def before_switch_latency(
    outcomes: Sequence[Outcome], start: float, switch: float | None, window: float = SWITCH_WINDOW
) -> Latency | None:
    """The requests sent while the command ran, up to the window around the
    switch: the same machine, busy with the same playbook, without the switch."""
    if switch is None:
        return None
    return latency_of(o for o in outcomes if start <= o.start < switch - window)


def p99_ratio(before: Latency | None, during: Latency | None) -> float | None:
    if before is None or during is None or before.p99_ms == 0:
        return None
    return during.p99_ms / before.p99_ms


def rate(outcomes: Sequence[Outcome]) -> float:
    """Requests per second over the load: every request from the first sent
    to the last answered."""
    if not outcomes:
        return 0.0
    span = max(o.end for o in outcomes) - min(o.start for o in outcomes)
    return len(outcomes) / span if span > 0 else 0.0


def latency_points(outcomes: Iterable[Outcome], origin: float) -> list[tuple[float, float]]:
    """(sent, latency ms) of every answered fast request, sent relative to origin."""
    return [
        (round(o.start - origin, 3), round((o.end - o.start) * 1000, 3))
        for o in outcomes
        if o.status and o.path == FAST_PATH
    ]


# ------------------------------------------------------------- the long request


@dataclass(frozen=True)
class LongRequest:
    """The one long request sent just before a command: it must come back 200."""

    path: str
    sent: float  # seconds since the command started (negative: before it)
    seconds: float  # until its answer or its error
    status: int  # 0: no HTTP answer
    version: str  # the release that answered it
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    def spans(self, moment: float | None) -> bool:
        """In flight at `moment` (seconds since the command started)."""
        return moment is not None and self.sent < moment < self.sent + self.seconds

    def text(self, switch: float | None) -> str:
        answer = f"HTTP {self.status}" if self.status else f"no answer ({self.error})"
        by = f" from {self.version}" if self.version else ""
        across = (
            f", in flight across the switch at {switch:.1f} s"
            if self.spans(switch)
            else ", NOT in flight at the switch"
        )
        return f"{answer}{by} after {self.seconds:.1f} s (sent at {self.sent:.1f} s{across})"


# -------------------------------------------------------------------- measure


@dataclass
class Measure:
    """One timed command under one load shape, and what the load saw."""

    name: str
    label: str
    rc: int
    wall: float
    switch: float | None  # first answer by the new version, since the command started
    switch_server: float | None  # upstream file written, since the command started
    recovery: float | None
    failed: int
    total: int
    unavailable: float | None  # None: the load shape cannot tell (wrk)
    versions: dict[str, int]
    command_window: tuple[float, float]  # in the load's clock
    slowest: list[tuple[str, float]] = field(default_factory=list)
    tasks: int = 0
    log: str = ""
    series: list[Bucket] = field(default_factory=list)
    shape: str = CONN
    verify: float | None = None  # app_verify_seconds of the run (None: no watch)
    rps: float = 0.0
    before: Latency | None = None
    during: Latency | None = None
    # the command's own time before the switch (the playbook running, no switch yet)
    before_switch: Latency | None = None
    latency: list[tuple[float, float]] = field(default_factory=list)
    long: LongRequest | None = None
    wrk: dict[str, Any] | None = None  # the wrk report spanning the command
    # where the machine's CPU went while the command ran (core-s by CPU_PARTS key,
    # cpu_split), and for how long it was read
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_window: float = 0.0

    @property
    def overhead(self) -> float | None:
        return overhead(self.wall, self.verify)

    @property
    def p99_ratio(self) -> float | None:
        return p99_ratio(self.before, self.during)

    @property
    def moment(self) -> float | None:
        """The switch, since the command started: the server's, else the load's."""
        return self.switch_server if self.switch_server is not None else self.switch


def server_switch(timed: Run, upstream: float | None) -> float | None:
    """When the switch file was written, since the command started (None:
    not during the command)."""
    if upstream is not None and upstream >= timed.started_wall:
        return upstream - timed.started_wall
    return None


def timing(timed: Run) -> dict[str, Any]:
    return {
        "rc": timed.rc,
        "wall": timed.seconds,
        "slowest": slowest_tasks(timed.output),
        "tasks": task_count(timed.output),
        "log": rel(timed.log) if timed.log else "",
    }


# Where the machine's CPU went while a command ran: the parts of cpu_split, in the
# report's order (key, column heading).
CPU_PARTS: tuple[tuple[str, str], ...] = (
    ("ansible", "ansible-playbook"),
    ("server", "test server"),
    ("apps", "its app containers"),
    ("load", "load tool"),
    ("engine", "Docker engine here"),
    ("other", "other"),
    ("idle", "idle"),
)
# testbed/cpu.py's labels -> part ("container melk-bench-N" is the test server)
_CPU_LABELS = {
    NESTED: "apps",
    "wrk": "load",
    # the bench's own process: the new-connection load's clients are its threads
    "other Python (testbed, helpers)": "load",
    "this machine's Docker engine": "engine",
    SSH: "ansible",  # Ansible's SSH connections (their masters outlive the playbook)
}


def cpu_split(
    used: Mapping[str, float], playbook: float, window: float, cores: int
) -> dict[str, float]:
    """CPU_PARTS from what used the machine's CPU during a command (testbed/cpu.py's
    `grown`, by label) and the playbook's own CPU (it and the workers and ssh it waited
    for: once it has ended, the machine's reading counts it in cpu.OTHER). Idle: what
    `cores` had in `window` seconds and nothing used."""
    parts = {key: 0.0 for key, _ in CPU_PARTS if key != "idle"}
    for label, seconds in used.items():
        if label.startswith("container melk-bench-"):
            part = "server"
        else:
            part = _CPU_LABELS.get(label, "other")
        parts[part] += seconds
    moved = min(playbook, parts["other"])
    parts["other"] -= moved
    parts["ansible"] += playbook
    parts["idle"] = max(0.0, cores * window - sum(parts.values()))
    return {key: round(value, 2) for key, value in parts.items()}


def measure(
    name: str,
    label: str,
    timed: Run,
    report: Report,
    t0: float,
    new: str,
    old: str,
    upstream: float | None = None,
    verify: float | None = None,
    long: LongRequest | None = None,
) -> Measure:
    """A command under the new-connection load (testbed/load.py)."""
    outcomes = report.outcomes
    return Measure(
        name=name,
        label=label,
        recovery=recovery_seconds(outcomes, old),
        failed=len(report.failed),
        total=report.total,
        unavailable=unavailable_seconds(outcomes),
        versions=dict(report.versions),
        shape=CONN,
        verify=verify,
        rps=rate(outcomes),
        long=long,
        **timeline(outcomes, timed.started - t0, timed, new, upstream),
        **timing(timed),
    )


def timeline(
    outcomes: Sequence[Outcome], start: float, timed: Run, new: str, upstream: float | None
) -> dict[str, Any]:
    """What both load shapes take from the requests' own timings, on the load's clock
    (the command started at `start`): the switch (the server's switch file, else the
    first answer by `new`), the series, and the latency before, around and before the
    switch."""
    switch_server = server_switch(timed, upstream)
    switch = first_answer(outcomes, new, start)
    moment = switch_server if switch_server is not None else switch
    at = None if moment is None else start + moment
    before, during = split_latency(outcomes, start, at)
    return {
        "switch": switch,
        "switch_server": switch_server,
        "command_window": (start, start + timed.seconds),
        "series": buckets(outcomes, start),
        "before": before,
        "during": during,
        "before_switch": before_switch_latency(outcomes, start, at),
        "latency": latency_points(outcomes, start),
    }


def wrk_failed(result: WrkResult, ignore: Sequence[str] = ()) -> int:
    """Socket errors and non-2xx answers, but those from the releases in `ignore`."""
    return result.socket_errors + result.non_2xx_except(*ignore)


def wrk_outcomes(samples: Sequence[Sample], origin: float) -> list[Outcome]:
    """The answers wrk timed as the load's outcomes, on a clock that starts at `origin`
    (unix seconds: when wrk started), leaving out the first WRK_WARMUP seconds (its
    connections opening)."""
    return [
        Outcome(
            round(s.sent - origin, 6),
            round(s.sent - origin + s.latency_ms / 1000, 6),
            FAST_PATH,
            s.status,
            s.release,
            "",
        )
        for s in samples
        if s.sent - origin >= WRK_WARMUP
    ]


def measure_wrk(
    name: str,
    label: str,
    timed: Run,
    result: WrkResult,
    samples: Sequence[Sample],
    origin: float,
    new: str,
    upstream: float | None = None,
    verify: float | None = None,
    long: LongRequest | None = None,
) -> Measure:
    """A command under wrk's keep-alive load, one wrk run through it that started at
    `origin` (unix seconds): failures and rate from wrk's report; the switch, the series
    and the latency from the answers it timed, as for the new-connection load (before:
    those sent before the command; during: within SWITCH_WINDOW seconds either side of
    the switch)."""
    outcomes = wrk_outcomes(samples, origin)
    return Measure(
        name=name,
        label=label,
        recovery=None,
        failed=wrk_failed(result),
        total=result.requests + result.socket_errors,
        unavailable=None,
        versions=dict(Counter(o.version for o in outcomes if o.ok)),
        shape=WRK,
        verify=verify,
        rps=result.rps,
        long=long,
        wrk=wrk_dict(result),
        **timeline(outcomes, timed.started_wall - origin, timed, new, upstream),
        **timing(timed),
    )


def wrk_dict(result: WrkResult) -> dict[str, Any]:
    return {
        "requests": result.requests,
        "seconds": result.seconds,
        "rps": round(result.rps, 1),
        "socket_errors": {
            "connect": result.connect_errors,
            "read": result.read_errors,
            "write": result.write_errors,
            "timeout": result.timeouts,
        },
        "non_2xx": result.non_2xx,
        "non_2xx_by_release": result.non_2xx_by_release,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
    }


@dataclass(frozen=True)
class FleetDeploy:
    """One deploy of the fleet run, and where the machine's CPU went during it
    (cpu_split; empty when it was not read)."""

    run: Run
    cpu: dict[str, float] = field(default_factory=dict)


@dataclass
class Results:
    started: str
    measures: dict[str, Measure] = field(default_factory=dict)
    other: dict[str, Run] = field(default_factory=dict)
    # the fleet's deploys by size, in the order they ran
    fleet: dict[int, list[FleetDeploy]] = field(default_factory=dict)
    releases: dict[str, str] = field(default_factory=dict)
    ansible: dict[str, Any] = field(default_factory=dict)
    wall: float = 0.0
    # the machine's 1-minute load average at the start and the end: the
    # figures are only comparable between runs on an equally busy machine
    load_average: list[float] = field(default_factory=list)

    def fleet_runs(self, hosts: int) -> list[Run]:
        """The deploys to a fleet of that many hosts, in the order they ran."""
        return [deploy.run for deploy in self.fleet.get(hosts, [])]
