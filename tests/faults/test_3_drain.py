"""Requests in flight on the old release when traffic moves: a deploy switches
while 10 s slow requests run on the old release, under the suite's load and 64
keep-alive connections (wrk). The switch moves only new connections (nftables
keeps each forwarded connection's destination), and the old release is stopped
only once it holds no connection (edge_proxy's drain, edge-proxy-connections):
each slow request completes with 200 from the old release, and the old
container gets its SIGTERM after the last of them ended.

The deploy runs without a standby (app_keep_standby=false: the release before is
drained and stopped, not kept running) and with a 1 s stop grace period
(app_deploy_stop_timeout), far shorter than the requests, so a release stopped
while one ran would cut it.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import pytest
from faultkit import AFTER_SWITCH, Results, Watcher

from testbed.bed import Bed
from testbed.wrk import KeepAlive, keepalive_load

pytestmark = pytest.mark.e2e

SLOW_MS = 10_000  # the sample app's longest /slow
EVERY = 0.5  # a new slow request this often until the switch


@dataclass(frozen=True)
class Slow:
    start: float  # wall clock (time.time()): the inner engine's events use it too
    end: float
    status: int
    version: str
    error: str


def slow_request(url: str) -> Slow:
    parsed = urlparse(url)
    start = time.time()
    status, version, error = 0, "", ""
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=30)
    try:
        conn.request("GET", f"/slow?ms={SLOW_MS}", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode()
        status = resp.status
        version = body.split('"version": "', 1)[-1].split('"', 1)[0] if status == 200 else ""
    except (OSError, http.client.HTTPException) as err:
        error = type(err).__name__
    finally:
        conn.close()
    return Slow(start, time.time(), status, version, error)


class SlowRequests:
    """A new slow request every EVERY seconds until `stop()`, each in its own thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.done: list[Slow] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop = threading.Thread(target=self._run, daemon=True)
        self._loop.start()

    def _one(self) -> None:
        outcome = slow_request(self.url)
        with self._lock:
            self.done.append(outcome)

    def _run(self) -> None:
        while not self._stop.is_set():
            thread = threading.Thread(target=self._one, daemon=True)
            thread.start()
            self._threads.append(thread)
            self._stop.wait(EVERY)

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> list[Slow]:
        self._stop.set()
        self._loop.join(5)
        for thread in self._threads:
            thread.join(SLOW_MS / 1000 + 30)
        return sorted(self.done, key=lambda s: s.start)


def sigterm_times(bed: Bed, container: str, since: float) -> list[float]:
    """When the inner engine sent `container` a SIGTERM (its kill events), wall clock."""
    out = bed.sh(
        f"docker events --since {since:.3f} --until {time.time():.3f}"
        f" --filter container={container} --filter event=kill --format '{{{{.TimeNano}}}}'"
    )
    return [int(line) / 1e9 for line in out.split()]


def test_old_release_stops_only_after_its_in_flight_requests(bed: Bed, results: Results) -> None:
    record = bed.state()["current"]
    old_sha, old_slot = record["sha"], record["slot"]
    old = next(v for v, s in bed.releases.items() if s == old_sha)
    new = "v7"
    sha = bed.releases[new]
    switched_at: list[float] = []
    begun = time.time()
    slow = SlowRequests(bed.server.url)

    def switched() -> None:
        switched_at.append(time.time())
        slow.stop()

    ka: KeepAlive
    watcher = Watcher(bed, sha, AFTER_SWITCH, switched)
    try:
        with keepalive_load(f"{bed.server.url}/version") as ka, bed.traffic(0.5) as report:
            run = bed.playbook(
                "deploy.yml",
                "-e",
                f"sha={sha}",
                "-e",
                "app_deploy_stop_timeout=1",
                "-e",
                "app_verify_seconds=1",
                # no standby: the old release is drained and stopped
                "-e",
                "app_keep_standby=false",
            )
    finally:
        watcher.stop()
        slow.stop()
    outcomes = slow.join()
    wrk = ka.result
    assert wrk is not None
    assert run.rc == 0, run.output[-4000:]
    assert switched_at, "the probe never saw the switch"
    switch = switched_at[0]
    on_old = [s for s in outcomes if s.version == old or (s.start < switch and s.status != 200)]
    in_flight = [s for s in on_old if s.start < switch < s.end]
    last_end = max((s.end for s in on_old), default=0.0)
    kills = sigterm_times(bed, f"melk-ai-{old_slot}", begun)
    stopped = min(kills) if kills else 0.0
    failed = [s for s in outcomes if s.status != 200]
    results.add(
        f"requests in flight on the old release through a deploy ({old} -> {new})",
        "each 10 s request on the old release completes (200); the old release gets"
        " its SIGTERM after the last one ends; 0 failed, 0 wrk socket errors",
        f"rc={run.rc}; {len(outcomes)} slow requests, {len(on_old)} on {old}"
        f" ({len(in_flight)} in flight at the switch), {len(failed)} failed; SIGTERM to"
        f" {old} {stopped - switch:.1f} s after the switch, {stopped - last_end:+.1f} s after"
        f" the last request on it ended; {wrk.summary()}",
        report,
        run.seconds,
    )
    assert failed == [], failed
    assert in_flight, "no slow request was in flight on the old release at the switch"
    assert all(s.version == old for s in on_old), on_old
    assert kills, f"the engine saw no SIGTERM to melk-ai-{old_slot}"
    # the client sees the end a moment after the app has closed the connection
    assert stopped >= last_end - 0.5, (
        f"the old release got its SIGTERM {last_end - stopped:.1f} s before its last request ended"
    )
    assert report.failed == [], report.summary()
    assert wrk.socket_errors == 0, wrk.summary()
    assert wrk.non_2xx == 0, wrk.summary()
    assert bed.served_version() == new
