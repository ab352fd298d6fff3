"""Unit tests for roles/healthcheck/library/health_probe.py: the loop on a fake clock,
the probe against a real HTTP server on this machine."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from health_probe import (
    NO_ANSWER,
    finished,
    healthy_codes,
    http_probe,
    parse_state,
    probe_loop,
    ready_loop,
    state_ok,
)
from hypothesis import given
from hypothesis import strategies as st

OK = list(range(200, 300))


class FakeTime:
    """A clock that moves only when slept on, or by probe_cost per probe."""

    def __init__(self, statuses: list[int], probe_cost: float = 0.0) -> None:
        self.now = 0.0
        self.statuses = statuses
        self.probe_cost = probe_cost
        self.probed_at: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds

    def probe(self) -> tuple[int, str]:
        self.probed_at.append(self.now)
        self.now += self.probe_cost
        index = min(len(self.probed_at), len(self.statuses)) - 1
        status = self.statuses[index]
        return status, "" if status > 0 else "ConnectionRefusedError: refused"

    def run(self, mode: str, seconds: float, interval: float = 1.0) -> dict[str, object]:
        return probe_loop(self.probe, mode, seconds, interval, OK, self.clock, self.sleep)


def test_healthy_codes_default_to_any_2xx() -> None:
    assert healthy_codes(None) == OK
    assert healthy_codes([]) == OK
    assert healthy_codes([404]) == [404]


@pytest.mark.parametrize(
    ("mode", "healthy", "elapsed", "expected"),
    [
        ("wait", True, 0.0, True),
        ("wait", False, 0.5, False),
        ("wait", False, 2.0, True),
        ("watch", True, 0.5, False),
        ("watch", True, 2.0, True),
        ("watch", False, 0.0, True),
    ],
)
def test_finished(mode: str, healthy: bool, elapsed: float, expected: bool) -> None:
    assert finished(mode, healthy, elapsed, 2.0, 1.0) is expected


def test_wait_retries_until_healthy() -> None:
    fake = FakeTime([NO_ANSWER, 503, 200])
    result = fake.run("wait", 30, interval=0.5)
    assert result["healthy"] is True
    assert result["status"] == 200
    assert result["attempts"] == 3
    assert fake.probed_at == [0.0, 0.5, 1.0]


def test_wait_gives_up_at_the_deadline_with_a_last_probe_on_it() -> None:
    fake = FakeTime([NO_ANSWER])
    result = fake.run("wait", 2.0)
    assert result["healthy"] is False
    assert result["status"] == NO_ANSWER
    assert "refused" in str(result["error"])
    assert fake.probed_at == [0.0, 1.0, 2.0]


def test_watch_lasts_its_window_without_overshooting() -> None:
    fake = FakeTime([200], probe_cost=0.3)
    result = fake.run("watch", 2.5)
    assert result["healthy"] is True
    assert fake.probed_at == pytest.approx([0.0, 1.0, 2.0, 2.5])
    assert result["elapsed"] == pytest.approx(2.8)


def test_watch_stops_at_the_first_unhealthy_answer() -> None:
    fake = FakeTime([200, 200, 500, 200])
    result = fake.run("watch", 60)
    assert result["healthy"] is False
    assert result["status"] == 500
    assert result["attempts"] == 3


def test_ready_waits_then_watches_from_the_first_healthy_answer() -> None:
    fake = FakeTime([NO_ANSWER, NO_ANSWER, 200])
    result = ready_loop(fake.probe, 30, 2.0, 0.5, OK, fake.clock, fake.sleep)
    assert result["healthy"] is True
    assert result["phase"] == "watch"
    # healthy at 1.0, then the window's probes at 1.5, 2.0, 2.5 and its end, 3.0
    assert fake.probed_at == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    assert result["attempts"] == 7
    assert result["elapsed"] == pytest.approx(3.0)


def test_ready_with_a_window_shorter_than_an_interval_probes_once_more_at_its_end() -> None:
    fake = FakeTime([200])
    result = ready_loop(fake.probe, 30, 0.3, 1.0, OK, fake.clock, fake.sleep)
    assert result["healthy"] is True
    assert fake.probed_at == pytest.approx([0.0, 0.3])


def test_ready_never_watches_a_release_that_did_not_come_up() -> None:
    fake = FakeTime([503])
    result = ready_loop(fake.probe, 2.0, 5.0, 1.0, OK, fake.clock, fake.sleep)
    assert result == {**result, "healthy": False, "phase": "wait", "status": 503}
    assert fake.probed_at == [0.0, 1.0, 2.0]


def test_ready_fails_in_the_watch_when_the_release_turns_unhealthy() -> None:
    fake = FakeTime([200, 200, 500])
    result = ready_loop(fake.probe, 30, 10.0, 1.0, OK, fake.clock, fake.sleep)
    assert result["healthy"] is False
    assert result["phase"] == "watch"
    assert result["status"] == 500


@pytest.mark.parametrize(
    ("rc", "stdout", "state", "ok"),
    [
        (
            0,
            "true 0 running 0\n",
            {"running": True, "restarts": 0, "status": "running", "exit_code": 0},
            True,
        ),
        (
            0,
            "true 2 running 0",
            {"running": True, "restarts": 2, "status": "running", "exit_code": 0},
            False,
        ),
        (
            0,
            "false 0 exited 3",
            {"running": False, "restarts": 0, "status": "exited", "exit_code": 3},
            False,
        ),
        (1, "", {}, False),
        (0, "garbage", {}, False),
    ],
)
def test_container_state_must_be_running_and_never_restarted(
    rc: int, stdout: str, state: dict[str, object], ok: bool
) -> None:
    assert parse_state(rc, stdout) == state
    assert state_ok(parse_state(rc, stdout)) is ok


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        FakeTime([200]).run("sometimes", 1)


@given(
    statuses=st.lists(st.sampled_from([200, 204, 500, 503, NO_ANSWER]), min_size=1, max_size=30),
    seconds=st.floats(min_value=0, max_value=10),
    interval=st.floats(min_value=0.1, max_value=3),
)
def test_watch_is_healthy_only_if_every_probe_was(
    statuses: list[int], seconds: float, interval: float
) -> None:
    fake = FakeTime(statuses)
    result = fake.run("watch", seconds, interval)
    seen = [statuses[min(i, len(statuses) - 1)] for i in range(len(fake.probed_at))]
    assert result["healthy"] is all(s in OK for s in seen)
    assert seen[-1] == result["status"]
    # never a probe after the window, and no more probes than the window holds
    assert all(t <= seconds + 1e-9 for t in fake.probed_at)
    assert len(fake.probed_at) <= int(seconds / interval) + 2


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        codes = {"/health": 200, "/sick": 503, "/moved": 302}
        self.send_response(codes.get(self.path, 404))
        if self.path == "/moved":
            self.send_header("Location", "/health")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize(("path", "status"), [("/health", 200), ("/sick", 503), ("/moved", 302)])
def test_http_probe_reports_the_status_and_follows_no_redirect(
    server: str, path: str, status: int
) -> None:
    assert http_probe(server + path, timeout=5)() == (status, "")


def test_http_probe_without_a_listener_reports_no_answer() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, error = http_probe(f"http://127.0.0.1:{port}/health", timeout=2)()
    assert status == NO_ANSWER
    assert "refused" in error.lower()


def test_documentation_is_yaml_and_matches_the_module() -> None:
    import health_probe
    import yaml

    doc = yaml.safe_load(health_probe.DOCUMENTATION)
    yaml.safe_load(health_probe.EXAMPLES)
    returns = yaml.safe_load(health_probe.RETURN)
    assert doc["module"] == "health_probe"
    assert set(doc["options"]) == {
        "url",
        "mode",
        "seconds",
        "watch_seconds",
        "container",
        "interval",
        "timeout",
        "status_codes",
    }
    assert doc["options"]["mode"]["choices"] == list(health_probe.MODES)
    assert set(returns) == {"healthy", "status", "attempts", "elapsed", "error", "phase", "state"}
