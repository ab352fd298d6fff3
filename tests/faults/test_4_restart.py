"""Restarts on the host, with no action from the user: the Docker engine, then
the whole host (the test server's container).

An engine restart (what an upgrade of docker.io does) must fail no request, for
clients that open a connection per request (testbed.load) and for 64 keep-alive
connections (wrk): the release keeps running (live-restore) and the switch's
nftables rule goes to the container's own address, not through a port the
engine publishes. After a host restart the release must serve again by itself:
its restart policy starts it, and the edge-proxy-restore unit applies the switch
file again with the address the container has now (the rule lives in memory).
How long that takes is measured and reported; that it ends is asserted.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error

import pytest
from faultkit import FILE_SLOT, LIVE_TARGET, NGINX_PIDS, Results

from testbed import servers
from testbed.bed import Bed
from testbed.load import Report
from testbed.wrk import KeepAlive, keepalive_load

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


def release_checks(bed: Bed, slot: str) -> tuple[str, str, str, str]:
    """(restart policy of the serving container, its address, the slot the switch
    file names, the target the kernel forwards the front address to)."""
    fmt = "'{{.HostConfig.RestartPolicy.Name}} {{.NetworkSettings.IPAddress}}'"
    policy, _, address = bed.sh(f"docker inspect -f {fmt} melk-ai-{slot}").strip().partition(" ")
    return policy, address, bed.sh(FILE_SLOT).strip(), bed.sh(LIVE_TARGET).strip()


def steady(bed: Bed, seconds: float = 3.0) -> Report:
    with bed.traffic(0.5, max_seconds=seconds + 10) as report:
        time.sleep(seconds)
    return report


def test_docker_engine_restart_under_load_fails_nothing(bed: Bed, results: Results) -> None:
    version, slot = current(bed)
    name = f"melk-ai-{slot}"
    fmt = "'{{.State.StartedAt}} {{.NetworkSettings.IPAddress}}'"
    started, address = bed.sh(f"docker inspect -f {fmt} {name}").split()
    nginx = bed.sh(NGINX_PIDS).strip()
    start = time.monotonic()
    ka: KeepAlive
    with keepalive_load(f"{bed.server.url}/version") as ka, bed.traffic(lead=2.0) as report:
        restart = time.monotonic()
        bed.sh("systemctl restart docker")
        engine_seconds = time.monotonic() - restart
    wrk = ka.result
    assert wrk is not None
    after = steady(bed)
    policy, address_after, file_slot, target = release_checks(bed, slot)
    state = bed.sh(f"docker inspect -f '{{{{.State.Status}}}} {{{{.State.StartedAt}}}}' {name}")
    status, started_at = state.split()
    # docker_host sets live-restore: the container keeps running through an
    # engine restart; without it, the restart policy starts it again.
    how = "kept running (live-restore)" if started_at == started else "restarted"
    results.add(
        "Docker engine restarted on the host, under load and 64 keep-alive connections",
        f"{version} serves throughout: 0 failed, 0 wrk socket errors, 0 non-2xx",
        f"serves {serving(bed)}; `systemctl restart docker` took {engine_seconds:.1f} s;"
        f" container {how}, policy {policy}; kernel -> {target} (melk-ai-{slot} at"
        f" {address_after}); {wrk.summary()}; then {len(after.failed)}/{after.total} failed",
        report,
        time.monotonic() - start,
    )
    assert report.failed == [], report.summary()
    assert wrk.requests > 100, wrk.summary()
    assert wrk.socket_errors == 0, wrk.summary()
    assert wrk.non_2xx == 0, wrk.summary()
    assert serving(bed) == version
    assert status == "running"
    assert policy == "unless-stopped"
    assert file_slot == slot
    assert target == f"{address_after}:8000" and address_after == address
    assert bed.sh(NGINX_PIDS).strip() == nginx, "nginx was restarted or reloaded"
    assert after.failed == [], after.summary()


def test_host_restart_brings_the_release_back(bed: Bed, results: Results) -> None:
    version, slot = current(bed)
    address = bed.sh(f"docker inspect -f '{{{{.NetworkSettings.IPAddress}}}}' melk-ai-{slot}")
    start = time.monotonic()
    subprocess.run(["docker", "restart", "-t", "30", bed.server.name], check=True, timeout=120)
    restarted = time.monotonic() - start
    servers.wait_booted(bed.server.name, timeout=COME_BACK_WITHIN)
    booted = time.monotonic() - start
    # the proxy's published port may change with the container's restart
    bed.server = servers.inspect(bed.server.name)
    wait_serving(bed, version)
    total = time.monotonic() - start
    after = steady(bed)
    policy, address_after, file_slot, target = release_checks(bed, slot)
    unit = bed.sh("systemctl is-active edge-proxy-restore || true").strip()
    results.add(
        "whole host restarted (the server's container)",
        f"{version} serves again by itself (edge-proxy-restore re-applies the rule)",
        f"serves {serving(bed)} {total:.1f} s after `docker restart` began (container up"
        f" after {restarted:.1f} s, booted after {booted:.1f} s); melk-ai-{slot} at"
        f" {address.strip()} before, {address_after} after; kernel -> {target};"
        f" edge-proxy-restore {unit}; policy {policy}",
        after,
        total,
    )
    assert serving(bed) == version
    assert unit == "active"
    assert file_slot == slot
    assert target == f"{address_after}:8000", (target, address_after)
    assert after.failed == [], after.summary()
    assert bed.state()["current"]["slot"] == slot
