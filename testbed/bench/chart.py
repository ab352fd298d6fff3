"""make bench's chart (bench.png): requests per second by the version that
answered, and the latency of each request over time, during one deploy under
the new-connection load, ours beside the naive method; below, the latency of
each request under wrk's keep-alive load (timed by wrk itself) in the same
scenarios. matplotlib comes from requirements-bench.txt (make bench installs it)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from testbed.bench.config import BUCKET
from testbed.bench.measure import Measure, Results

CHART_RUNS = (
    ("deploy_conn", "ours: ansible-playbook deploy.yml"),
    ("naive_conn", "naive: docker compose down && up -d"),
)
# The same scenarios under wrk: latency only (wrk cannot time a failed request).
WRK_CHART_RUNS = (
    ("deploy_wrk", "ours, wrk -c64 keep-alive"),
    ("naive_wrk", "naive, wrk -c64 keep-alive"),
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


def dense_points(run: Measure) -> bool:
    """wrk's: tens of thousands of points."""
    return len(run.latency) > 5000


def draw_latency(ax: Any, run: Measure, title: str = "") -> None:
    """Each fast request's latency by when it was sent; the command and the
    switch marked, the p99 before and during the switch as lines."""
    if run.latency:
        sent, ms = zip(*run.latency, strict=True)
        ax.scatter(
            sent,
            ms,
            s=1 if dense_points(run) else 4,
            alpha=0.3 if dense_points(run) else 1.0,
            color=COLORS[0],
            label="one /version request",
        )
    if title:
        ax.set_title(f"{title}: {run.failed} of {run.total} requests failed")
    # wrk's points fill the top left (its lead); the bottom right stays clear
    legend_at = "lower right" if dense_points(run) else "upper left"
    ax.axvspan(0, run.wall, color="0.88", zorder=0, label="the command runs")
    if run.moment is not None:
        ax.axvline(run.moment, color="black", linestyle="--", linewidth=1, label="the switch")
    for latency, style, name in ((run.before, ":", "before"), (run.during, "-.", "during")):
        if latency is not None:
            ax.axhline(
                latency.p99_ms,
                color=FAILED_COLOR,
                linestyle=style,
                linewidth=1,
                label=f"p99 {name}: {latency.p99_ms:.0f} ms",
            )
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_xlabel("seconds since the deploy started (request sent)")
    ax.legend(loc=legend_at, fontsize=8)


def chart(results: Results, path: Path) -> None:
    """Requests per second by version served, ours beside the naive method,
    during a deploy of a new release (image not on the host)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(results.measures.get(name), title) for name, title in CHART_RUNS]
    ceiling = chart_ceiling(run for run, _ in runs if run is not None)
    fig, axes = plt.subplots(3, 2, figsize=(13, 12))
    for column, (run, title) in enumerate(runs):
        if run is None:
            axes[0][column].set_title(f"{title}: not measured")
            continue
        draw_run(axes[0][column], run, title, ceiling)
        draw_latency(axes[1][column], run)
    for column, (name, title) in enumerate(WRK_CHART_RUNS):
        wrk_run = results.measures.get(name)
        if wrk_run is None:
            axes[2][column].set_title(f"{title}: not measured")
            continue
        draw_latency(axes[2][column], wrk_run, title)
    axes[0][0].set_ylabel("requests per second")
    fig.suptitle(
        "A deploy under load, image on the host, one host (make bench): a new connection"
        " per request (top two rows), 64 keep-alive connections (wrk, bottom row)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
