"""A bounded HTTP load generator: worker threads, one new connection a request.

It sends a mix of fast requests and slow ones (that are in flight while traffic
moves) to a URL on this machine, records every outcome, and stops by itself at
`max_seconds` or `max_requests`, whichever comes first.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlparse


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
        return text + f"; served by {versions or 'none'}"


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
    ) -> None:
        parsed = urlparse(url)
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
            conn.request("GET", path, headers={"Connection": "close"})
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
            outcome = self._one(path)
            with self._lock:
                self._report.outcomes.append(outcome)
            n += 1

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
