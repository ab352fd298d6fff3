"""make bench's settings: the servers, the load, the releases and the goals."""

from __future__ import annotations

from testbed import STATE_DIR

BENCH_DIR = STATE_DIR / "bench"
LOG_DIR = BENCH_DIR / "logs"
PREFIX = "melk-bench"
FLEET_SIZES = (1, 3, 5)
# Deploys per fleet size, taken in turns (1, 3, 5, 1, 3, 5, ...) so that a machine
# getting slower or faster meanwhile weighs on every size; the ratio is of medians.
FLEET_ROUNDS = 3
# The fleet's releases, each deploy the next one (fleet_plan): host 1 is in every
# size, so no deploy may bring a host the release it already serves.
FLEET_RELEASES = ("fleet-a", "fleet-b", "fleet-c", "fleet-d")
VERIFY_SECONDS = 5
# The degrading release breaks once it has answered 100 requests; the watch
# stops at the first failure, so a longer window only makes sure it is seen.
DEGRADE_VERIFY_SECONDS = 15
DEGRADE_ENV = {"APP_DEGRADE_AFTER_REQUESTS": "100"}
NAIVE_PORT = 9000  # the naive app's port on the server (published to 127.0.0.1)
NAIVE_DIR = "naive"  # in the deploy user's home on the server
LOAD_WORKERS = 4
LOAD_SLOW_MS = 400
# Seconds of load before a command starts and after it ends; the new-connection
# load's latency "before" comes from the requests sent in the lead before it.
LOAD_LEAD = 5.0
# Load shapes: every scenario runs once under each, in the same run.
WRK = "wrk"  # testbed/wrk.py: 64 keep-alive connections (wrk -t64 -c64)
CONN = "conn"  # testbed/load.py: a new connection per request, 4 clients
SHAPES = (WRK, CONN)
SHAPE_LABELS = {
    WRK: "wrk, 64 keep-alive connections",
    CONN: f"new connection per request, {LOAD_WORKERS} clients",
}
# wrk: one run through each command that times every answer (testbed/wrk.py's samples):
# WRK_LEAD_BEFORE seconds of it before the command, the first WRK_WARMUP of them left out
# (its connections opening); latency "before" is the requests sent in the rest of that lead.
WRK_LEAD_BEFORE = 6.0
WRK_WARMUP = 1.0
WRK_LEAD = 1.0  # seconds of wrk after a command ends
# Latency "during" the switch, both load shapes: the requests sent within SWITCH_WINDOW
# seconds either side of it.
SWITCH_WINDOW = 1.0
# One long request in the run below (a deploy: the old release it is in flight
# on would be stopped after the switch and the watch); it must come back with
# 200. It is sent when the playbook reaches a task whose name holds LONG_TRIGGER
# (the health gate, the step right before the switch: on a busy machine the
# switch may come later than the request's length after the start); the naive
# method's, LONG_LEAD seconds before its command starts.
LONG_MS = 20_000
LONG_TRIGGER = "Health gate"
LONG_LEAD = 1.0
LONG_RUN = "deploy_cold"
LONG_NAIVE_RUN = "naive_cold"  # the same request through the naive method, for contrast
SETTLE_LIMIT = 20.0  # seconds to wait after a command for the expected version
BUCKET = 0.5  # seconds a bar of the chart covers

# Goals (issue 17), one host, the image already on it, app_verify_seconds 5.
# Overhead: a run's wall time minus app_verify_seconds.
GOAL_DEPLOY_OVERHEAD = 6.0
GOAL_ROLLBACK_OVERHEAD = 3.0
GOAL_P99_RATIO = 2.0  # p99 latency during our switch / p99 before it
GOAL_RECOVERY = 5.0
GOAL_FLEET_RATIO = 1.3

# name -> (version, mode, extra env) of the sample releases the bench uses
RELEASES: dict[str, tuple[str, str, dict[str, str] | None]] = {
    "v1": ("bench-v1", "ok", None),
    "cold": ("bench-v2-cold", "ok", None),
    **{f"deploy-{s}": (f"bench-v3-{s}", "ok", None) for s in SHAPES},
    **{f"degrade-{s}": (f"bench-v4-degrade-{s}", "degrade", DEGRADE_ENV) for s in SHAPES},
    "naive-cold": ("bench-v2-naive", "ok", None),
    **{f"naive-{s}": (f"bench-v3-naive-{s}", "ok", None) for s in SHAPES},
    **{name: (f"bench-{name}", "ok", None) for name in FLEET_RELEASES},
}


def fleet_plan(
    sizes: tuple[int, ...] = FLEET_SIZES,
    rounds: int = FLEET_ROUNDS,
    releases: tuple[str, ...] = FLEET_RELEASES,
) -> list[tuple[int, str]]:
    """The fleet's deploys in order: (hosts, release), the sizes in turns, each deploy
    the next release."""
    order = [size for _ in range(rounds) for size in sizes]
    return [(size, releases[i % len(releases)]) for i, size in enumerate(order)]


# Settings recorded with the figures (what made the playbooks fast or slow).
ANSIBLE_KEYS = (
    "DEFAULT_STRATEGY",
    "DEFAULT_STRATEGY_PLUGIN_PATH",
    "DEFAULT_FORKS",
    "DEFAULT_GATHERING",
    "CALLBACKS_ENABLED",
)
