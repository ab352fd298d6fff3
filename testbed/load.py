"""A bounded HTTP load generator: worker threads, one new connection a request.

It sends a mix of fast requests and slow ones (that are in flight while traffic
moves) to a URL on this machine, records every outcome, and stops by itself at
`max_seconds` or `max_requests`, whichever comes first. `under_load` is how
demo, bench, e2e and faults run something while it sends; the figures below it
(first answer, recovery, time without service) read a run's outcomes.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlparse

# How many requests without an answer a summary lists, each with when it was sent.
MAX_UNANSWERED = 3


@dataclass(frozen=True)
class Outcome:
    start: float  # seconds since the load started
    end: float
    path: str
    status: int  # 0 when no HTTP answer came (refused, reset, timed out)
    version: str
    error: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def versions(self) -> Counter[str]:
        return Counter(o.version for o in self.outcomes if o.ok)

    @property
    def slow_total(self) -> int:
        return sum(1 for o in self.outcomes if o.path.startswith("/slow"))

    def summary(self) -> str:
        versions = ", ".join(f"{v}: {n}" for v, n in sorted(self.versions.items()))
        errors = Counter(o.error or f"HTTP {o.status}" for o in self.failed)
        text = f"{self.total} requests ({self.slow_total} slow), {len(self.failed)} failed"
        if errors:
            text += " [" + "; ".join(f"{e} x{n}" for e, n in errors.most_common(5)) + "]"
        text += f"; served by {versions or 'none'}"
        # When each one went: a request with no HTTP answer at all (a timeout, a
        # reset) is rare and is the one to find in the server's logs.
        unanswered = [o for o in self.failed if not o.status]
        if unanswered:
            text += "; no answer: " + "; ".join(
                f"{o.path} sent at {o.start:.1f} s, {o.error} after {o.end - o.start:.1f} s"
                for o in unanswered[:MAX_UNANSWERED]
            )
            if len(unanswered) > MAX_UNANSWERED:
                text += f"; {len(unanswered) - MAX_UNANSWERED} more"
        return text


class Load:
    """Start with .start(), end with .stop() -> Report (or let max_seconds end it)."""

    def __init__(
        self,
        url: str,
        workers: int = 4,
        slow_ms: int = 400,
        slow_every: int = 4,
        max_seconds: float = 120,
        max_requests: int = 200_000,
        timeout: float = 15,
        host: str = "",
        min_cycle: float = 0.0,
    ) -> None:
        parsed = urlparse(url)
        # The Host header of every request ('' for the URL's): an app the edge routes by name.
        self.headers = {"Connection": "close", **({"Host": host} if host else {})}
        if parsed.hostname not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError("the load generator only targets this machine's loopback")
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.workers = workers
        self.slow_path = f"/slow?ms={slow_ms}"
        self.slow_every = slow_every
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.timeout = timeout
        # Each worker starts a request at most every min_cycle seconds: where every
        # answer is instant (maintenance mode's page), the workers would otherwise open
        # a new connection as fast as the machine allows.
        self.min_cycle = min_cycle
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._report = Report()
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0

    def _one(self, path: str) -> Outcome:
        start = time.monotonic() - self._t0
        status, version, error = 0, "", ""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", path, headers=self.headers)
            resp = conn.getresponse()
            body = resp.read()
            status = resp.status
            try:
                version = str(json.loads(body).get("version", ""))
            except ValueError:
                version = ""
        except (OSError, http.client.HTTPException) as err:
            error = type(err).__name__
        finally:
            conn.close()
        return Outcome(start, time.monotonic() - self._t0, path, status, version, error)

    def _worker(self, index: int) -> None:
        n = 0
        while not self._stop.is_set():
            if time.monotonic() - self._t0 >= self.max_seconds:
                break
            with self._lock:
                if len(self._report.outcomes) >= self.max_requests:
                    break
            path = self.slow_path if (n + index) % self.slow_every == 0 else "/version"
            began = time.monotonic()
            outcome = self._one(path)
            with self._lock:
                self._report.outcomes.append(outcome)
            n += 1
            rest = self.min_cycle - (time.monotonic() - began)
            if rest > 0:
                self._stop.wait(rest)

    @property
    def t0(self) -> float:
        """time.monotonic() when the load started: the origin of its clock."""
        return self._t0

    def start(self) -> Load:
        self._t0 = time.monotonic()
        self._threads = [
            threading.Thread(target=self._worker, args=(i,), daemon=True)
            for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def snapshot(self) -> Report:
        """The outcomes so far (a copy, in start order), while the load runs."""
        with self._lock:
            outcomes = sorted(self._report.outcomes, key=lambda o: o.start)
        return Report(outcomes)

    def stop(self) -> Report:
        """Stop sending; wait for the requests in flight; return every outcome."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        with self._lock:
            self._report.outcomes.sort(key=lambda o: o.start)
            return self._report

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# The traffic every suite sends while something runs: 4 clients, one request
# in four a slow one (in flight while traffic moves).
WORKERS = 4
SLOW_MS = 400


@dataclass
class Traffic(Report):
    """The outcomes of a load: filled in when `under_load` ends; while it runs,
    `snapshot()` reads the outcomes so far."""

    load: Load | None = None

    @property
    def t0(self) -> float:
        """time.monotonic() when the load started (outcome times count from it)."""
        return self.load.t0 if self.load else 0.0

    def clock(self, monotonic: float) -> float:
        """A time.monotonic() reading on the load's clock."""
        return monotonic - self.t0

    def snapshot(self) -> Report:
        return self.load.snapshot() if self.load else Report(list(self.outcomes))


@contextmanager
def under_load(
    url: str,
    lead: float = 1.0,
    max_seconds: float = 240,
    workers: int = WORKERS,
    slow_ms: int = SLOW_MS,
    host: str = "",
    min_cycle: float = 0.0,
) -> Iterator[Traffic]:
    """Requests to url (with the Host header `host` when given) while the body runs,
    `lead` seconds of them before and after it, each worker's at most one every
    `min_cycle` seconds; the Traffic holds every outcome once the block is left."""
    load = Load(
        url,
        workers=workers,
        slow_ms=slow_ms,
        max_seconds=max_seconds,
        host=host,
        min_cycle=min_cycle,
    ).start()
    traffic = Traffic(load=load)
    try:
        time.sleep(lead)  # traffic flows before anything moves
        yield traffic
        time.sleep(lead)  # and after
    finally:
        traffic.outcomes.extend(load.stop().outcomes)


def served_chain(report: Report, min_run: int = 3) -> str:
    """The versions that served, in order: "v1 -> v2", "v2 -> v3-broken -> v2".
    Runs of fewer than min_run answers (in-flight stragglers around a switch)
    are left out."""
    runs: list[tuple[str, int]] = []
    for outcome in report.outcomes:
        if not outcome.ok:
            continue
        if runs and runs[-1][0] == outcome.version:
            runs[-1] = (outcome.version, runs[-1][1] + 1)
        else:
            runs.append((outcome.version, 1))
    chain: list[str] = []
    for index, (version, count) in enumerate(runs):
        if count < min_run and index not in {0, len(runs) - 1}:
            continue
        if not chain or chain[-1] != version:
            chain.append(version)
    return " -> ".join(chain) or "nothing yet"


# ------------------------------------------------ figures of a load's outcomes


def first_answer(outcomes: Iterable[Outcome], version: str, since: float) -> float | None:
    """Seconds from `since` to the first request answered by `version`."""
    ends = [o.end for o in outcomes if o.ok and o.version == version]
    return min(ends) - since if ends else None


def recovery_seconds(outcomes: Sequence[Outcome], old_version: str) -> float | None:
    """From the first failed request to the first answer of the old version
    for a request sent after the last failure (None if nothing failed or the
    old version never answered again)."""
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return None
    first = min(o.end for o in failed)
    last = max(o.end for o in failed)
    back = [o.end for o in outcomes if o.ok and o.version == old_version and o.start > last]
    return min(back) - first if back else None


def unavailable_seconds(outcomes: Sequence[Outcome]) -> float:
    """Seconds without service: from the start of a failed request until a
    request sent after it is answered, summed over the outages. A request
    already in flight when the outage began does not end it."""
    total = 0.0
    outage: float | None = None
    for outcome in sorted(outcomes, key=lambda o: o.end):
        if not outcome.ok:
            outage = outcome.start if outage is None else min(outage, outcome.start)
        elif outage is not None and outcome.start >= outage:
            total += outcome.end - outage
            outage = None
    if outage is not None:
        total += max(o.end for o in outcomes) - outage
    return total


def sent_after(outcomes: Iterable[Outcome], moment: float) -> list[Outcome]:
    """The requests sent at or after `moment` (load clock)."""
    return [o for o in outcomes if o.start >= moment]
