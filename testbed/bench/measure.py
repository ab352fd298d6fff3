"""The figures of one timed command under load (pure: from its outcomes)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from testbed.bench.config import BUCKET
from testbed.console import rel
from testbed.load import Outcome, Report, first_answer, recovery_seconds, unavailable_seconds
from testbed.playbook import Run, slowest_tasks, task_count


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


def measure(
    name: str,
    label: str,
    timed: Run,
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
        log=rel(timed.log) if timed.log else "",
        series=buckets(outcomes, start),
    )


@dataclass
class Results:
    started: str
    measures: dict[str, Measure] = field(default_factory=dict)
    other: dict[str, Run] = field(default_factory=dict)
    fleet: dict[int, Run] = field(default_factory=dict)
    releases: dict[str, str] = field(default_factory=dict)
    ansible: dict[str, Any] = field(default_factory=dict)
    wall: float = 0.0
    # the machine's 1-minute load average at the start and the end: the
    # figures are only comparable between runs on an equally busy machine
    load_average: list[float] = field(default_factory=list)
