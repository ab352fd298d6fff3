"""make bench's report: the table (bench.md), the goals met or not, bench.json."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from testbed.bench.config import (
    BUCKET,
    CONN,
    DEGRADE_VERIFY_SECONDS,
    FLEET_ROUNDS,
    FLEET_SIZES,
    GOAL_DEPLOY_OVERHEAD,
    GOAL_FLEET_RATIO,
    GOAL_P99_RATIO,
    GOAL_RECOVERY,
    GOAL_ROLLBACK_OVERHEAD,
    LOAD_LEAD,
    LOAD_SLOW_MS,
    LOAD_WORKERS,
    LONG_MS,
    LONG_NAIVE_RUN,
    LONG_RUN,
    RELEASES,
    SHAPE_LABELS,
    SHAPES,
    SWITCH_WINDOW,
    VERIFY_SECONDS,
    WRK,
    WRK_LEAD_BEFORE,
    WRK_WARMUP,
)
from testbed.bench.measure import CPU_PARTS, Latency, Measure, Results, ratio
from testbed.console import duration, rel, secs
from testbed.playbook import Run, slowest_tasks, task_count
from testbed.wrk import CONNECTIONS

# The scenarios: (name, label); each runs once per load shape as NAME_SHAPE.
SCENARIOS = (
    ("deploy", "ours: deploy, image on the host"),
    ("rollback", "ours: rollback to the previous release"),
    ("degrade", "ours: release that degrades after the switch (automatic rollback)"),
    ("naive", "naive: down && up -d, image on the host"),
)
# Runs under the new-connection load only: a new image (not on the host).
COLD = (
    ("deploy_cold", "ours: deploy, image not on the host"),
    ("naive_cold", "naive: down && up -d, image not on the host"),
)
# Ours, judged by the failed-requests goal (the degrading release fails some by design).
OURS_CLEAN = ("deploy", "rollback")


def run_name(scenario: str, shape: str) -> str:
    return f"{scenario}_{shape}"


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


def all_met(checks: Sequence[bool | None]) -> bool | None:
    """False if any check failed, else None if any could not be measured, else True."""
    if any(check is False for check in checks):
        return False
    if not checks or any(check is None for check in checks):
        return None
    return True


def median_seconds(runs: Sequence[Run]) -> float | None:
    return statistics.median(r.seconds for r in runs) if runs else None


def fleet_ratio(results: Results) -> float | None:
    """The largest fleet's median deploy time over one host's; none when a deploy of
    either failed."""
    one, five = results.fleet_runs(1), results.fleet_runs(max(FLEET_SIZES))
    if not one or not five or any(r.rc for r in [*one, *five]):
        return None
    return ratio(median_seconds(five), median_seconds(one))


def overhead_goal(m: dict[str, Measure], scenario: str, limit: float, text: str) -> Goal:
    """The scenario's overhead under every load shape, each within limit."""
    figures: list[str] = []
    checks: list[bool | None] = []
    for shape in SHAPES:
        run = m.get(run_name(scenario, shape))
        cost = None if run is None else run.overhead
        if run is None or cost is None:
            figures.append(f"{shape} n/a")
            checks.append(None)
            continue
        note = "" if run.rc == 0 else f" (exit {run.rc})"
        figures.append(f"{shape} {cost:.1f} s{note}")
        checks.append(run.rc == 0 and cost <= limit)
    return Goal(text, ", ".join(figures), all_met(checks))


def failed_goal(m: dict[str, Measure]) -> Goal:
    """0 failed requests in our deploys and rollbacks under each load shape,
    beside the naive method's count in the same run."""
    parts: list[str] = []
    naive_parts: list[str] = []
    checks: list[bool | None] = []
    for shape in SHAPES:
        ours = [m[n] for n in ours_clean_runs(shape) if n in m]
        if not ours:
            parts.append(f"{shape} n/a")
            checks.append(None)
        else:
            failed, total = sum(x.failed for x in ours), sum(x.total for x in ours)
            parts.append(f"{shape} {failed} of {total}")
            checks.append(failed == 0)
        naive = [m[n] for n in naive_runs(shape) if n in m]
        n_failed, n_total = sum(x.failed for x in naive), sum(x.total for x in naive)
        naive_parts.append(f"{shape} {n_failed} of {n_total}" if naive else f"{shape} n/a")
    figure = f"ours {', '.join(parts)}; naive {', '.join(naive_parts)}"
    return Goal(
        "0 failed requests for ours (deploys + rollback), both load shapes, vs the naive method",
        figure,
        all_met(checks),
    )


def ours_clean_runs(shape: str) -> list[str]:
    names = [run_name(s, shape) for s in OURS_CLEAN]
    return names + (["deploy_cold"] if shape == CONN else [])


def naive_runs(shape: str) -> list[str]:
    return [run_name("naive", shape)] + (["naive_cold"] if shape == CONN else [])


def long_goal(m: dict[str, Measure]) -> Goal:
    text = (
        f"the {LONG_MS / 1000:.0f} s request, in flight on the old release at the switch, "
        "completes with 200"
    )
    run = m.get(LONG_RUN)
    if run is None or run.long is None:
        return Goal(text, "n/a", None)
    figure = f"{run.label}: {run.long.text(run.moment)}"
    if not run.long.spans(run.moment):
        return Goal(text, figure, None if run.long.ok else False)
    return Goal(text, figure, run.long.ok)


def p99_goal(m: dict[str, Measure], shape: str, how: str) -> Goal:
    """p99 latency during our switch at most GOAL_P99_RATIO x the p99 before,
    for our deploy and rollback under one load shape."""
    figures: list[str] = []
    checks: list[bool | None] = []
    for scenario in OURS_CLEAN:
        run = m.get(run_name(scenario, shape))
        found = None if run is None else run.p99_ratio
        if run is None or found is None or run.before is None or run.during is None:
            figures.append(f"{scenario} n/a")
            checks.append(None)
            continue
        figure = f"{scenario} {run.during.p99_ms:.0f} vs {run.before.p99_ms:.0f} ms = {found:.2f}x"
        if run.before_switch is not None:
            figure += f" (playbook before the switch: {run.before_switch.p99_ms:.0f} ms)"
        figures.append(figure)
        checks.append(found <= GOAL_P99_RATIO)
    return Goal(
        f"p99 latency during our switch at most {GOAL_P99_RATIO:g}x p99 before ({how})",
        ", ".join(figures),
        all_met(checks),
    )


def goals(results: Results) -> list[Goal]:
    m = results.measures
    found = [
        overhead_goal(
            m,
            "rollback",
            GOAL_ROLLBACK_OVERHEAD,
            f"rollback overhead (wall - {VERIFY_SECONDS} s watch) at most "
            f"{GOAL_ROLLBACK_OVERHEAD:g} s",
        ),
        overhead_goal(
            m,
            "deploy",
            GOAL_DEPLOY_OVERHEAD,
            f"deploy overhead (wall - {VERIFY_SECONDS} s watch) at most {GOAL_DEPLOY_OVERHEAD:g} s",
        ),
        failed_goal(m),
        long_goal(m),
        p99_goal(m, WRK, f"wrk: the lead vs +-{SWITCH_WINDOW:g} s of the switch"),
        p99_goal(m, CONN, f"new connections: the lead vs +-{SWITCH_WINDOW:g} s of the switch"),
    ]
    degrade = m.get(run_name("degrade", CONN))
    rec = degrade.recovery if degrade else None
    found.append(
        Goal(
            f"recovery from the degrading release within {GOAL_RECOVERY:.0f} s",
            secs(rec),
            None if rec is None else rec <= GOAL_RECOVERY,
        )
    )
    fr = fleet_ratio(results)
    one, five = results.fleet_runs(1), results.fleet_runs(max(FLEET_SIZES))
    figure = (
        f"{median_seconds(five):.1f} s vs {median_seconds(one):.1f} s = {times(fr)}x "
        f"(medians of {len(five)} and {len(one)} deploys)"
        if one and five
        else "n/a"
    )
    found.append(
        Goal(
            f"{max(FLEET_SIZES)} hosts within {GOAL_FLEET_RATIO:g}x the 1-host time",
            figure,
            None if fr is None else fr <= GOAL_FLEET_RATIO,
        )
    )
    return found


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[met]


def latency_cell(value: Latency | None) -> str:
    return "n/a" if value is None else value.text()


def run_row(run: Measure | None, label: str, shape: str) -> list[str]:
    if run is None:
        return [label, shape, *["n/a"] * 9]
    exit_note = "" if run.rc == 0 else f" (exit {run.rc})"
    cost = run.overhead
    return [
        label,
        shape,
        f"{run.wall:.1f} s{exit_note}",
        "" if cost is None else f"{cost:.1f} s",
        secs(run.switch_server if run.switch_server is not None else run.switch),
        f"{run.failed} / {run.total}",
        f"{run.rps:.0f}",
        latency_cell(run.before),
        latency_cell(run.before_switch),
        latency_cell(run.during),
        secs(run.unavailable),
    ]


def time_line(run: Measure) -> str:
    slowest = "; ".join(f"{name.split(' : ')[-1]} {sec:.1f} s" for name, sec in run.slowest[:3])
    each = run.wall / run.tasks
    return (
        f"- {run.label} ({run.shape}): {run.tasks} task results, {each:.2f} s each on average; "
        f"{slowest}"
    )


def wrk_line(run: Measure) -> str | None:
    if run.wrk is None:
        return None
    errors = run.wrk["socket_errors"]
    by_release = ", ".join(f"{r} {n}" for r, n in sorted(run.wrk["non_2xx_by_release"].items()))
    return (
        f"- {run.label}: {run.wrk['requests']} requests in {run.wrk['seconds']:.1f} s; "
        f"socket errors: connect {errors['connect']}, read {errors['read']}, "
        f"write {errors['write']}, timeout {errors['timeout']}; "
        f"non-2xx: {run.wrk['non_2xx']}"
        + (f" ({by_release})" if by_release else "")
        + f"; wrk's own p50 / p99 / max: {run.wrk['p50_ms']} / {run.wrk['p99_ms']} / "
        f"{run.wrk['max_ms']} ms"
    )


def cpu_row(run: Measure, cores: int) -> list[str]:
    """The run's CPU parts, core-s and share of what the cores had while it ran."""
    had = cores * run.cpu_window
    return [
        run.label,
        run.shape,
        f"{run.cpu_window:.1f} s, {had:.1f} core-s",
        *(
            f"{run.cpu.get(key, 0.0):.1f} ({run.cpu.get(key, 0.0) / had:.0%})" if had else "n/a"
            for key, _ in CPU_PARTS
        ),
    ]


def cpu_lines(m: dict[str, Measure], cores: int) -> list[str]:
    """Where the machine's CPU went during each run (none when it was not read)."""
    found = [cpu_row(run, cores) for run in m.values() if run.cpu]
    if not found:
        return []
    return [
        "",
        f"Where the {cores} cores went during each run (core-s, and the share of what they "
        "had from the command's start to its end; ansible-playbook: it, its workers and "
        "ssh; test server: its sshd, Docker engine, nginx and the modules; load tool: wrk, "
        "or the bench's own process for the new-connection clients; Docker engine here: "
        "docker-proxy, the published port the load comes in by):",
        "",
        *markdown_table(["run", "load", "window", *(heading for _, heading in CPU_PARTS)], found),
    ]


def fleet_table(results: Results, cores: int) -> list[str]:
    """The fleet's deploys by size: each one's wall time, their median and its ratio to
    one host's, and where the cores went (medians: ansible-playbook; the test servers,
    their app containers included; the share the cores left idle)."""
    one = median_seconds(results.fleet_runs(1))
    found = []
    for n, deploys in sorted(results.fleet.items()):
        runs = results.fleet_runs(n)
        mid = median_seconds(runs)
        # the idle share of what the cores had while it was read (all parts together)
        used = [
            (c["ansible"], c["server"] + c["apps"], c["idle"] / had)
            for c in (d.cpu for d in deploys)
            if c and (had := sum(c.values()))
        ]
        cpu = (
            [
                f"{statistics.median(u[0] for u in used):.1f}",
                f"{statistics.median(u[1] for u in used):.1f}",
                f"{statistics.median(u[2] for u in used):.0%}",
            ]
            if used
            else ["n/a"] * 3
        )
        each = ", ".join(
            f"{r.seconds:.1f}" + ("" if r.rc == 0 else f" (exit {r.rc})") for r in runs
        )
        found.append([str(n), f"{each} s", f"{mid:.1f} s", times(ratio(mid, one)), *cpu])
    head = ["hosts", "each deploy", "median", "x 1 host", "ansible-playbook core-s"]
    return markdown_table([*head, "test servers core-s", f"{cores} cores idle"], found)


def rows(m: dict[str, Measure]) -> list[list[str]]:
    found = [
        run_row(m.get(run_name(scenario, shape)), label, shape)
        for scenario, label in SCENARIOS
        for shape in SHAPES
    ]
    found += [run_row(m.get(name), label, CONN) for name, label in COLD]
    return found


def table(results: Results) -> list[str]:
    m = results.measures
    lines = [f"## make bench, {results.started} (total {duration(results.wall)})", ""]
    lines.append(
        "One host (melk-bench-1), load through its edge proxy (the naive method: its "
        f"published port), each scenario under two load shapes in the same run: "
        f"**{WRK}**, wrk -t{CONNECTIONS} -c{CONNECTIONS} (keep-alive connections, /version, "
        "one wrk run through each command that times every answer); "
        f"**{CONN}**, a new connection per request ({LOAD_WORKERS} clients, one request "
        f"in four /slow?ms={LOAD_SLOW_MS}). app_verify_seconds={VERIFY_SECONDS} "
        f"({DEGRADE_VERIFY_SECONDS} for the degrading release); image on the host unless "
        f"said. Machine: {os.cpu_count()} cores, load average "
        + " -> ".join(f"{x:.1f}" for x in results.load_average)
        + " (start -> end)."
    )
    lines.append("")
    head = [
        "run",
        "load",
        "wall time",
        "overhead",
        "start -> switch",
        "failed / requests",
        "req/s",
        "latency before, p50 / p99 / max ms",
        "before the switch",
        "during",
        "no service",
    ]
    lines += markdown_table(head, rows(m))
    lines += [
        "",
        "Overhead: wall time minus app_verify_seconds. Start -> switch: to when the "
        "switch file was written on the server (for the degrading release: switched "
        "back), else the first answer by the new release. Failed: for "
        f"{WRK}, socket errors + non-2xx answers; for {CONN}, requests without a 2xx "
        "answer. Latency, from each fast request's own timing (/version; "
        f"{WRK}: timed by wrk itself, one run through the command, never restarted; "
        f"{CONN}: sent on a new connection): *before*, those sent in the "
        f"{LOAD_LEAD:g} s before the command ({WRK}: after its first {WRK_WARMUP:g} s, "
        f"its connections opening); *during*, those sent within {SWITCH_WINDOW:g} s "
        "either side of the switch (the whole command when no switch was seen). *Before "
        "the switch*: the requests sent from the command's start to that window (the "
        "playbook running, no switch yet). No service: from a failed request "
        "until a later one is answered "
        f"({WRK} cannot tell: a socket error has no time).",
    ]
    for name in (LONG_RUN, LONG_NAIVE_RUN):
        long_run = m.get(name)
        if long_run is not None and long_run.long is not None:
            lines += [
                "",
                f"The {LONG_MS / 1000:.0f} s request ({long_run.long.path}) during "
                f"{long_run.label}: {long_run.long.text(long_run.moment)}.",
            ]
    degrade = m.get(run_name("degrade", CONN))
    rec = degrade.recovery if degrade else None
    lines += [
        "",
        f"Recovery from the degrading release ({CONN}): {secs(rec)} "
        "(first failed request to the old version answering again).",
    ]
    wrk_lines = [line for run in m.values() if (line := wrk_line(run))]
    if wrk_lines:
        lines += ["", f"{WRK} in detail (its whole run, lead included):", "", *wrk_lines]
    lines += ["", "Where the time goes (task results per run, profile_tasks' slowest):", ""]
    lines += [time_line(run) for run in m.values() if run.tasks]
    lines += cpu_lines(m, os.cpu_count() or 1)
    lines += [
        "",
        f"Fleet ({FLEET_ROUNDS} deploys to each size, the sizes in turns, no load, images "
        "on the hosts; core-s and idle: medians of the deploys):",
        "",
    ]
    lines += fleet_table(results, os.cpu_count() or 1)
    lines += ["", "Goals (one host, image on the host, app_verify_seconds 5):", ""]
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

    def run(m: Measure) -> dict[str, Any]:
        return {**asdict(m), "overhead": m.overhead, "p99_ratio": m.p99_ratio}

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
            "shapes": SHAPE_LABELS,
            "load": {"workers": LOAD_WORKERS, "slow_ms": LOAD_SLOW_MS, "slow_every": 4},
            "wrk": {"threads": CONNECTIONS, "connections": CONNECTIONS},
            "wrk_lead_before_seconds": WRK_LEAD_BEFORE,
            "wrk_warmup_seconds": WRK_WARMUP,
            "switch_window_seconds": SWITCH_WINDOW,
            "long_request_ms": LONG_MS,
            "bucket_seconds": BUCKET,
        },
        "releases": {n: {"version": RELEASES[n][0], "sha": s} for n, s in results.releases.items()},
        "runs": {name: run(m) for name, m in results.measures.items()},
        "other": {name: timed(t) for name, t in results.other.items()},
        "fleet": {
            str(n): [{**timed(d.run), "cpu": d.cpu} for d in deploys]
            for n, deploys in sorted(results.fleet.items())
        },
        "fleet_ratio_of_medians": fleet_ratio(results),
        "goals": [asdict(g) for g in goals(results)],
    }
