"""melk-ai sample service: a tiny HTTP app for tests, the demo and the benchmark.

Standard library only, so its image is the local python3 base plus this file.
Endpoints: GET /health, GET /version (also /), GET /slow?ms=N (answers after N ms),
GET /headers (the forwarding headers the edge proxy set: Host, X-Forwarded-*).
It listens on PORT (default 8000) and answers health on APP_HEALTH_PATH (default
/health), both from its environment, so an app_env can move them.
`python3 /app/server.py release` is its release command (app_release_command): it
appends a marker line to $APP_DATA_DIR/release-marker (default /data, a volume),
which a release reads at start and shows in /version as release_markers.
Build-time switches (APP_MODE) make a release misbehave on purpose:
  ok         healthy
  unhealthy  /health always answers 503 (never passes a health gate)
  error      /health always answers 500 with an error body that holds APP_SECRET_TOKEN
  exit       logs a fatal line (with APP_SECRET_TOKEN) and exits 4 at start
  crash      the process exits APP_CRASH_AFTER seconds after start
  degrade    every request answers 500 from APP_DEGRADE_AFTER seconds after start,
             or (when APP_DEGRADE_AFTER_REQUESTS is set) once it has answered that
             many requests other than /health: only real traffic, after a switch
On SIGTERM it stops accepting connections and finishes the requests in flight.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

VERSION = os.environ.get("APP_VERSION", "dev")
MODE = os.environ.get("APP_MODE", "ok")
CRASH_AFTER = float(os.environ.get("APP_CRASH_AFTER", "1"))
DEGRADE_AFTER = float(os.environ.get("APP_DEGRADE_AFTER", "8"))
DEGRADE_AFTER_REQUESTS = int(os.environ.get("APP_DEGRADE_AFTER_REQUESTS", "0"))
HEALTH_PATH = os.environ.get("APP_HEALTH_PATH", "/health")
MAX_SLOW_MS = 30_000  # below the edge proxy's 60 s read timeout; make bench sends a 20 s request
DATA_DIR = os.environ.get("APP_DATA_DIR", "/data")
MARKER_FILE = "release-marker"
STARTED = time.monotonic()
_served = 0
_served_lock = threading.Lock()


def count_request(path: str) -> int:
    """Requests answered other than /health, this one included."""
    global _served
    if path == HEALTH_PATH:
        return _served
    with _served_lock:
        _served += 1
        return _served


def degraded(served: int) -> bool:
    if MODE != "degrade":
        return False
    if DEGRADE_AFTER_REQUESTS > 0:
        return served > DEGRADE_AFTER_REQUESTS
    return time.monotonic() - STARTED >= DEGRADE_AFTER


class Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of new connections (the edge
    # opens one per request) overflows it, and the kernel then drops handshakes, which
    # hangs requests. Web servers use far more (uvicorn and gunicorn: 2048).
    request_queue_size = 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "melk-ai-sample"

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # which release answered, for load tools that see only headers (wrk's script)
        self.send_header("X-Release", VERSION)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if degraded(count_request(url.path)):
            self._send(500, {"error": "degraded", "version": VERSION})
            return
        if url.path == HEALTH_PATH:
            if MODE == "error":
                token = os.environ.get("APP_SECRET_TOKEN", "")
                self._send(500, {"error": f"database unreachable (token {token})"})
            elif MODE == "unhealthy":
                self._send(503, {"status": "unhealthy", "version": VERSION})
            else:
                self._send(200, {"status": "ok", "version": VERSION})
        elif url.path in ("/", "/version"):
            self._send(200, self._version())
        elif url.path == "/headers":
            self._send(200, {**self._version(), "headers": self._forwarding()})
        elif url.path == "/slow":
            try:
                ms = int(parse_qs(url.query).get("ms", ["500"])[0])
            except ValueError:
                ms = 500
            time.sleep(min(max(ms, 0), MAX_SLOW_MS) / 1000)
            self._send(200, {**self._version(), "slept_ms": ms})
        else:
            self._send(404, {"error": "not found"})

    def _forwarding(self) -> dict[str, str]:
        names = ("Host", "X-Forwarded-Proto", "X-Forwarded-For", "X-Real-IP")
        return {name: self.headers[name] for name in names if self.headers[name] is not None}

    def _version(self) -> dict[str, object]:
        # Names of APP_* variables only: shows app_env arrived, never a value.
        names = sorted(k for k in os.environ if k.startswith("APP_") and k not in _BUILD_VARS)
        return {
            "version": VERSION,
            "mode": MODE,
            "env_names": names,
            "release_markers": RELEASE_MARKERS,
        }

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the load generator makes thousands of requests


_BUILD_VARS = {
    "APP_VERSION",
    "APP_MODE",
    "APP_CRASH_AFTER",
    "APP_DEGRADE_AFTER",
    "APP_DEGRADE_AFTER_REQUESTS",
}


def read_markers() -> list[str]:
    """The release command's marker lines, as they were when this release started."""
    try:
        with open(os.path.join(DATA_DIR, MARKER_FILE), encoding="utf-8") as handle:
            return handle.read().splitlines()
    except OSError:
        return []


RELEASE_MARKERS: list[str] = []


def release() -> int:
    """The release command: append '<version> <unix time>' to the marker file."""
    line = f"{VERSION} {time.time():.6f}"
    with open(os.path.join(DATA_DIR, MARKER_FILE), "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    print(f"release command of {VERSION}: marker {line} written", flush=True)
    return 0


def main() -> None:
    if sys.argv[1:] == ["release"]:
        sys.exit(release())
    if MODE == "exit":
        token = os.environ.get("APP_SECRET_TOKEN", "")
        print(f"melk-ai sample {VERSION} fatal: no database (token {token})", flush=True)
        sys.exit(4)
    RELEASE_MARKERS.extend(read_markers())
    port = int(os.environ.get("PORT", "8000"))
    server = Server(("0.0.0.0", port), Handler)  # noqa: S104 - in a container
    server.daemon_threads = False  # server_close() waits for requests in flight
    server.block_on_close = True

    def stop(signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if MODE == "crash":
        threading.Timer(CRASH_AFTER, lambda: os._exit(3)).start()
    print(f"melk-ai sample {VERSION} ({MODE}) listening on :{port}", flush=True)
    server.serve_forever()
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
