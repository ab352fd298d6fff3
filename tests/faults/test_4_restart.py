"""Restarts on the host, with no action from the user: the Docker engine, then
the whole host (the test server's container). The current release must come
back by itself: its restart policy starts it, the proxy's config still points
at its slot. The outage is measured (requests fail while the host is down);
what is asserted is that it ends and the right release serves."""

from __future__ import annotations

import subprocess
import time
import urllib.error

import pytest
from faultkit import UPSTREAM, Results

from testbed import servers
from testbed.bed import Bed
from testbed.load import Report

pytestmark = pytest.mark.e2e

COME_BACK_WITHIN = 180.0  # seconds; a bound on the wait, not a figure under test


def serving(bed: Bed) -> str:
    try:
        return bed.served_version()
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return ""


def wait_serving(bed: Bed, version: str) -> float:
    """Seconds until the proxy answers with `version` again."""
    start = time.monotonic()
    while serving(bed) != version:
        assert time.monotonic() - start < COME_BACK_WITHIN, f"{version} did not come back"
        time.sleep(0.2)
    return time.monotonic() - start


def current(bed: Bed) -> tuple[str, str]:
    record = bed.state()["current"]
    version = next(v for v, s in bed.releases.items() if s == record["sha"])
    return version, str(record["slot"])


def release_checks(bed: Bed, slot: str) -> tuple[str, str]:
    """(restart policy of the serving container, port the proxy points at)."""
    policy = bed.sh(f"docker inspect -f '{{{{.HostConfig.RestartPolicy.Name}}}}' melk-ai-{slot}")
    port = bed.sh(f"sed -n 's/^server [^:]*:\\([0-9]*\\).*/\\1/p' {UPSTREAM}")
    return policy.strip(), port.strip()


def steady(bed: Bed, seconds: float = 3.0) -> Report:
    with bed.traffic(0.5, max_seconds=seconds + 10) as report:
        time.sleep(seconds)
    return report


def outage(report: Report) -> float:
    """Seconds from the first failed request to the end of the last one."""
    failed = report.failed
    return max(o.end for o in failed) - min(o.start for o in failed) if failed else 0.0


def test_docker_engine_restart_brings_the_release_back(bed: Bed, results: Results) -> None:
    version, slot = current(bed)
    started = bed.sh(f"docker inspect -f '{{{{.State.StartedAt}}}}' melk-ai-{slot}")
    start = time.monotonic()
    with bed.traffic(0.5) as report:
        bed.sh("systemctl restart docker")
        wait_serving(bed, version)
    after = steady(bed)
    policy, port = release_checks(bed, slot)
    fmt = "'{{.State.Status}} {{.State.StartedAt}}'"
    state = bed.sh(f"docker inspect -f {fmt} melk-ai-{slot}")
    status, started_at = state.split()
    # docker_host sets live-restore: the container keeps running through an
    # engine restart; without it, the restart policy starts it again.
    how = "kept running (live-restore)" if started_at == started.strip() else "restarted"
    results.add(
        "Docker engine restarted on the host",
        f"{version} serves again by itself; outage reported",
        f"serves {serving(bed)}; container {how}, policy {policy}; proxy on {port};"
        f" outage {outage(report):.1f} s (published ports down while the engine restarts);"
        f" then {len(after.failed)}/{after.total} failed",
        report,
        time.monotonic() - start,
    )
    assert serving(bed) == version
    assert status == "running"
    assert policy == "unless-stopped"
    assert port == {"blue": "18001", "green": "18002"}[slot]
    assert after.failed == [], after.summary()


def test_host_restart_brings_the_release_back(bed: Bed, results: Results) -> None:
    version, slot = current(bed)
    start = time.monotonic()
    subprocess.run(["docker", "restart", "-t", "30", bed.server.name], check=True, timeout=120)
    servers.wait_booted(bed.server.name, timeout=COME_BACK_WITHIN)
    # the proxy's published port may change with the container's restart
    bed.server = servers.inspect(bed.server.name)
    wait_serving(bed, version)
    total = time.monotonic() - start
    after = steady(bed)
    policy, port = release_checks(bed, slot)
    results.add(
        "whole host restarted (the server's container)",
        f"{version} serves again by itself",
        f"serves {serving(bed)} {total:.1f} s after `docker restart` began;"
        f" proxy on {port}, policy {policy}",
        after,
        total,
    )
    assert serving(bed) == version
    assert port == {"blue": "18001", "green": "18002"}[slot]
    assert after.failed == [], after.summary()
    assert bed.state()["current"]["slot"] == slot
