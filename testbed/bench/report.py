"""make bench's report: the table (bench.md), the goals met or not, bench.json."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from testbed.bench.config import (
    BUCKET,
    DEGRADE_VERIFY_SECONDS,
    FLEET_SIZES,
    GOAL_DEPLOY,
    GOAL_FLEET_RATIO,
    GOAL_RECOVERY,
    GOAL_ROLLBACK,
    LOAD_SLOW_MS,
    LOAD_WORKERS,
    RELEASES,
    VERIFY_SECONDS,
)
from testbed.bench.measure import Measure, Results, ratio
from testbed.console import duration, rel, secs
from testbed.playbook import Run, slowest_tasks, task_count


def times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def markdown_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


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
    def timed(t: Run) -> dict[str, Any]:
        return {
            "command": t.command,
            "rc": t.rc,
            "seconds": round(t.seconds, 3),
            "tasks": task_count(t.output),
            "slowest_tasks": slowest_tasks(t.output),
            "log": rel(t.log) if t.log else "",
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
