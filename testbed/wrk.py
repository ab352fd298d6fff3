"""wrk (Debian's package) as the keep-alive load: 64 connections that stay open.

Browsers, CDNs and load balancers keep their connections to the edge alive; a switch
that closes them (an nginx reload does) fails the request a client already sent on one.
`keepalive_load` runs wrk while a block runs, stops it with SIGINT (wrk then prints its
figures) and parses them; `command` and `parse` are pure. With `progress`, the block can
also count the answers as they come (`KeepAlive.answers`) and wait for enough of them,
instead of guessing how long a loaded machine needs (`KeepAlive.wait_for`). With
`samples`, wrk times every request itself and writes one line per answer when it stops
(`read_samples`): the latency in any window of one long run, without restarting wrk.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONNECTIONS = 64
THREADS = 2
# A request counts as failed (a wrk "timeout") only past this: the test machines are shared
# and can be slow (p99 of several seconds under a load average of 14); latency is what the
# benchmark measures, not a pass/fail limit.
TIMEOUT_S = 30
# Longest a run may last: wrk stops by itself then (a block that hangs ends).
MAX_SECONDS = 900
# The tests' keep-alive loads (keepalive_load): each connection sends one request every
# TEST_PACE_MS, at most 64 * 1000 / 250 = 256 a second, instead of as fast as the machine
# answers. They check that no request fails while traffic moves, which a paced load shows
# as well: a reload closes the connections it holds idle between its requests, and the
# next request on one is a read error. At full speed wrk, nginx and the app took every
# cycle the suites' lanes share. make bench runs wrk at full speed (wrk.command): its
# figures are the load's.
TEST_PACE_MS = 250
# The tests' HTTPS shape that opens a new connection (a full TLS handshake) per request:
# wrk's CPU follows the handshakes in progress, not the rate, and a handshake takes longer
# the busier the machine. On an idle machine 2 connections at full speed took 0.8 of a
# core (280 handshakes a second), 8 about as much, 2 paced at 100 ms 0.07; 4 paced at
# 100 ms answer about 15 a second. A test that lasts minutes uses fewer (test_tls.py).
TEST_HANDSHAKE_CONNECTIONS = 4
TEST_HANDSHAKE_PACE_MS = 100

# Counts the non-2xx answers by the release that sent them (the sample app's X-Release).
SCRIPT = Path(__file__).with_name("lua") / "by_release.lua"
# The server closes the connection after each answer; wrk then reconnects.
NEW_CONNECTIONS = ("Connection: close",)
# What the script prints per answer when given "progress" (ASCII's record separator).
MARK = "\x1e"
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = r"([0-9.]+)(us|ms|s|m|h)"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    non_2xx: int = 0  # wrk counts answers that are neither 2xx nor 3xx
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    non_2xx_by_release: dict[str, int] = field(default_factory=dict)

    def non_2xx_except(self, *releases: str) -> int:
        """Non-2xx answers from anyone but ``releases`` (the proxy itself counts as "none")."""
        return sum(n for release, n in self.non_2xx_by_release.items() if release not in releases)

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"wrk: {self.requests} requests in {self.seconds:.1f} s ({self.rps:.0f}/s), "
            f"socket errors {self.socket_errors} (connect {self.connect_errors}, read "
            f"{self.read_errors}, write {self.write_errors}, timeout {self.timeouts}), "
            f"non-2xx/3xx {self.non_2xx} {self.non_2xx_by_release}, "
            f"p50 {self.p50_ms} ms, p99 {self.p99_ms} ms, max {self.max_ms} ms"
        )


def command(
    url: str,
    connections: int = CONNECTIONS,
    threads: int = THREADS,
    seconds: int = MAX_SECONDS,
    timeout_s: int = TIMEOUT_S,
    headers: tuple[str, ...] = (),
    host: str = "",
    progress: bool = False,
    pace_ms: int = 0,
    samples: Path | None = None,
) -> list[str]:
    """The wrk command line: keep-alive connections, latency percentiles. With
    `NEW_CONNECTIONS` as headers, wrk opens a new connection (over https, a full TLS
    handshake) for every request instead; with `host`, its Host header (an app the edge
    routes by name); with `progress`, a `MARK` printed per answer; with `pace_ms`, each
    connection waits that long before each request (at most connections * 1000 /
    pace_ms requests a second) instead of sending at once; with `samples`, every answer
    timed into that file when wrk stops (`read_samples`), one thread per connection."""
    script_args = [
        *(["progress"] if progress else []),
        *([f"pace={pace_ms}"] if pace_ms else []),
        *([f"samples={samples}"] if samples else []),
    ]
    if samples:
        threads = connections  # the script pairs requests and answers by thread
    threads = min(threads, connections)  # wrk refuses more threads than connections
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={timeout_s}s",
        "--latency",
        *(
            arg
            for header in ((f"Host: {host}",) if host else ()) + headers
            for arg in ("-H", header)
        ),
        "--script",
        str(SCRIPT),
        url,
        *(["--", *script_args] if script_args else []),
    ]


@dataclass(frozen=True)
class Sample:
    """One answer wrk timed (command's `samples`)."""

    sent: float  # unix seconds
    latency_ms: float
    status: int
    release: str  # the X-Release header, "none" without one


def parse_samples(text: str) -> list[Sample]:
    """The lines the script writes with samples=PATH, in the order sent; a line cut short
    (wrk stopped while writing) is left out."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        try:
            found.append(Sample(float(parts[0]), float(parts[1]), int(parts[2]), parts[3]))
        except (IndexError, ValueError):
            continue
    return sorted(found, key=lambda s: s.sent)


def read_samples(path: Path) -> list[Sample]:
    return parse_samples(path.read_text(encoding="utf-8")) if path.exists() else []


def _ms(value: str, unit: str) -> float:
    return round(float(value) * _UNIT_MS[unit], 3)


def parse(text: str) -> WrkResult:
    """wrk's report as numbers; ValueError when it holds no request count."""
    total = re.search(r"^\s*([0-9]+) requests in " + _DURATION, text, re.MULTILINE)
    if total is None:
        raise ValueError(f"wrk printed no request count: {text[-500:]!r}")
    requests, seconds = int(total.group(1)), _ms(total.group(2), total.group(3)) / 1000
    errors = re.search(
        r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)", text
    )
    connect, read, write, timeouts = (int(n) for n in errors.groups()) if errors else (0,) * 4
    non_2xx = re.search(r"Non-2xx or 3xx responses: ([0-9]+)", text)
    percentiles = {
        p: _ms(v, u) for p, v, u in re.findall(r"^\s*(50|99)%\s+" + _DURATION, text, re.MULTILINE)
    }
    by_release = {
        release: int(count)
        for release, count in re.findall(r"^non-2xx (\S+) ([0-9]+)$", text, re.MULTILINE)
    }
    latency = re.search(r"^\s*Latency\s+\S+\s+\S+\s+" + _DURATION, text, re.MULTILINE)
    return WrkResult(
        requests=requests,
        seconds=seconds,
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeouts,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        p50_ms=percentiles.get("50"),
        p99_ms=percentiles.get("99"),
        max_ms=_ms(latency.group(1), latency.group(2)) if latency else None,
        non_2xx_by_release=by_release,
    )


@dataclass
class KeepAlive:
    """`answers` counts as they come (with `progress`); the rest is filled in when the
    block is left."""

    result: WrkResult | None = None
    output: str = field(default="", repr=False)
    answers: int = 0

    def wait_for(self, answers: int, timeout_s: float) -> bool:
        """Wait until `answers` have come in all, at most `timeout_s`; whether they did."""
        deadline = time.monotonic() + timeout_s
        while self.answers < answers and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.answers >= answers


def _read(stream: int, load: KeepAlive, chunks: list[bytes]) -> None:
    """Keep wrk's output and count its marks until it closes its end."""
    while chunk := os.read(stream, 65536):
        chunks.append(chunk)
        load.answers += chunk.count(MARK.encode())


@contextmanager
def keepalive_load(
    url: str,
    lead: float = 1.0,
    headers: tuple[str, ...] = (),
    host: str = "",
    progress: bool = False,
    pace_ms: int = TEST_PACE_MS,
    **options: Any,
) -> Iterator[KeepAlive]:
    """wrk against url (with `headers`, and the Host header `host` when given) while the
    body runs, `lead` seconds of it before and after, each connection paced (`pace_ms`;
    0: as fast as it can); with `progress`, the answers counted as they come; `options`
    are command's (connections, threads, samples...)."""
    process = subprocess.Popen(  # nosec B603: a fixed command line
        command(url, headers=headers, host=host, progress=progress, pace_ms=pace_ms, **options),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None  # nosec B101: stdout=PIPE
    load = KeepAlive()
    chunks: list[bytes] = []
    reader = threading.Thread(
        target=_read, args=(process.stdout.fileno(), load, chunks), daemon=True
    )
    reader.start()
    try:
        time.sleep(lead)
        yield load
        time.sleep(lead)
    finally:
        process.send_signal(signal.SIGINT)  # wrk stops and prints its report
        process.wait(timeout=30)
        reader.join(timeout=30)
        process.stdout.close()
    load.output = b"".join(chunks).decode(errors="replace").replace(MARK, "")
    load.result = parse(load.output)
