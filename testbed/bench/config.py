"""make bench's settings: the servers, the load, the releases and the goals."""

from __future__ import annotations

from testbed import STATE_DIR

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
