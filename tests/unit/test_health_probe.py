"""Unit tests for roles/healthcheck/library/health_probe.py: the loop on a fake clock,
the probe against a real HTTP server on this machine."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import health_probe
import pytest
from ansible.module_utils.melk_docker import STATE_FORMAT, parse_state
from ansible.module_utils.melk_http import NO_ANSWER
from health_probe import (
    CLOCK_TOLERANCE,
    finished,
    healthy_codes,
    http_probe,
    probe_loop,
    ready_loop,
    state_ok,
    window_left,
)
from hypothesis import example, given
from hypothesis import strategies as st
from module_harness import real_docker, run_module

OK = list(range(200, 300))


class FakeTime:
    """A clock that moves only when slept on, or by probe_cost per probe. probed_at and
    slept are relative to start; a loop that would never end (more than limit probes)
    is stopped with an error, so that it fails at once instead of hanging. So is a second
    probe at the same instant: the loop never sends one, and a loop that slept with
    time.sleep instead of the fake sleep would send them, the fake clock standing still."""

    def __init__(
        self,
        statuses: list[int],
        probe_cost: float = 0.0,
        start: float = 0.0,
        limit: int = 1000,
    ) -> None:
        self.start = start
        self.now = start
        self.statuses = statuses
        self.probe_cost = probe_cost
        self.limit = limit
        self.probed_at: list[float] = []
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept.append(seconds)
        self.now += seconds

    def probe(self) -> tuple[int, str]:
        if len(self.probed_at) >= self.limit:
            raise RuntimeError(f"more than {self.limit} probes: the loop does not end")
        if self.probed_at and self.now - self.start == self.probed_at[-1]:
            raise RuntimeError(f"a second probe at {self.probed_at[-1]}: the clock stood still")
        self.probed_at.append(self.now - self.start)
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
    assert finished(mode, healthy, elapsed, 2.0) is expected


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


def test_ready_waits_at_the_wait_interval_then_watches_at_the_interval() -> None:
    fake = FakeTime([NO_ANSWER, NO_ANSWER, NO_ANSWER, 200])
    result = ready_loop(fake.probe, 30, 1.0, 0.5, OK, fake.clock, fake.sleep, wait_interval=0.1)
    assert result["healthy"] is True
    # healthy at 0.3 (a probe every 0.1 s), then the window's at 0.8 and its end, 1.3
    assert fake.probed_at == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.8, 1.3])
    assert result["elapsed"] == pytest.approx(1.3)


def test_run_waits_at_the_wait_interval_in_wait_mode() -> None:
    fake = FakeTime([NO_ANSWER, NO_ANSWER, 200])
    given = params(mode="wait", seconds=5.0, interval=1.0, wait_interval=0.2)
    result = health_probe.run(given, Docker(""), fake.probe, fake.clock, fake.sleep)
    assert fake.probed_at == pytest.approx([0.0, 0.2, 0.4])
    assert result["healthy"] is True


@pytest.mark.parametrize(
    ("seconds", "since", "now", "left"),
    [
        (5.0, 0.0, 1000.0, 5.0),  # no since: the whole window from the first probe
        (5.0, 1000.0, 1000.0, 5.0),  # switched this instant
        (5.0, 1000.0, 1000.3, 4.7),  # the task started 0.3 s after the switch
        (5.0, 1000.0, 1006.0, 0.0),  # a hook took longer than the window: one probe
        (5.0, 1000.0, 999.0, 5.0),  # a clock that went back never lengthens the window
    ],
)
def test_window_left(seconds: float, since: float, now: float, left: float) -> None:
    assert window_left(seconds, since, now) == pytest.approx(left)


@given(
    seconds=st.floats(0, 600),
    since=st.floats(0, 2e9),
    now=st.floats(0, 2e9),
)
def test_window_left_is_within_the_window(seconds: float, since: float, now: float) -> None:
    left = window_left(seconds, since, now)
    assert 0.0 <= left <= seconds
    if since > 0 and now >= since:
        assert left == pytest.approx(max(0.0, since + seconds - now), abs=1e-6)


def test_run_watches_until_the_window_from_since_ends() -> None:
    fake = FakeTime([200])
    given = params(mode="watch", seconds=5.0, interval=1.0, since=1000.0)
    result = health_probe.run(
        given, Docker(""), fake.probe, fake.clock, fake.sleep, wall=lambda: 1000.5
    )
    assert result["healthy"] is True
    # 0.5 s of the window had passed: probes at 0..4 and the last at its end, 4.5
    assert fake.probed_at == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 4.5])


def test_run_probes_once_when_the_window_from_since_is_over() -> None:
    fake = FakeTime([200])
    given = params(mode="watch", seconds=5.0, since=1000.0)
    result = health_probe.run(
        given, Docker(""), fake.probe, fake.clock, fake.sleep, wall=lambda: 1009.0
    )
    assert (result["healthy"], fake.probed_at) == (True, [0.0])


def test_run_refuses_a_wait_interval_of_zero() -> None:
    result = health_probe.run(params(wait_interval=0.0), Docker(""))
    assert result["failed"] is True
    assert "wait_interval must be above 0, got 0.0" in result["msg"]


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


def test_a_window_that_is_a_whole_number_of_intervals_gets_no_extra_probe() -> None:
    """Regression: seconds=5.999999999999998, interval=0.1. The 61st probe's time, a sum of
    sixty 0.1 s pauses, came out at 5.999999999999995 s, short of the window by 3e-15 s, so
    a 62nd probe followed 3e-15 s later. A deadline missed by less than a microsecond
    (CLOCK_TOLERANCE) is now met: 61 probes, 0.1 s apart, the last one at the end."""
    fake = FakeTime([200])
    result = fake.run("watch", 5.999999999999998, 0.1)
    assert result["healthy"] is True
    assert len(fake.probed_at) == 61
    assert fake.probed_at[-1] == pytest.approx(6.0)
    gaps = [b - a for a, b in zip(fake.probed_at, fake.probed_at[1:], strict=False)]
    assert min(gaps) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("elapsed", "over"),
    [(2.0, True), (2.0 - CLOCK_TOLERANCE, True), (2.0 - 2 * CLOCK_TOLERANCE, False)],
)
def test_a_deadline_missed_by_at_most_the_tolerance_is_met(elapsed: float, over: bool) -> None:
    assert finished("watch", True, elapsed, 2.0) is over
    assert finished("wait", False, elapsed, 2.0) is over


def test_the_loop_counts_time_from_its_first_probe() -> None:
    fake = FakeTime([NO_ANSWER], start=100.0)
    result = fake.run("wait", 2.0)
    assert fake.probed_at == [0.0, 1.0, 2.0]
    assert (result["attempts"], result["elapsed"]) == (3, 2.0)


def test_a_watch_ends_with_its_first_unhealthy_answer_at_once() -> None:
    fake = FakeTime([200, NO_ANSWER, 200], start=50.0)
    result = fake.run("watch", 10.0, interval=0.5)
    assert result == {
        "healthy": False,
        "status": NO_ANSWER,
        "error": "ConnectionRefusedError: refused",
        "attempts": 2,
        "elapsed": 0.5,
    }
    assert fake.probed_at == [0.0, 0.5]


def test_elapsed_is_rounded_to_the_millisecond() -> None:
    fake = FakeTime([200], probe_cost=0.12345)
    assert fake.run("wait", 30)["elapsed"] == 0.123


@pytest.mark.parametrize("probe_cost", [0.5, 0.7])
def test_a_probe_that_takes_the_interval_is_followed_by_the_next_without_a_sleep(
    probe_cost: float,
) -> None:
    fake = FakeTime([503, 503, 200], probe_cost=probe_cost)
    result = fake.run("wait", 30, interval=0.5)
    assert fake.probed_at == pytest.approx([0.0, probe_cost, 2 * probe_cost])
    assert fake.slept == []
    assert result["attempts"] == 3


def test_ready_counts_the_pause_before_the_watch_in_its_elapsed_time() -> None:
    fake = FakeTime([200], start=7.0)
    result = ready_loop(fake.probe, 30, 0.12345, 1.0, OK, fake.clock, fake.sleep)
    assert fake.probed_at == pytest.approx([0.0, 0.12345])
    assert fake.slept == [0.12345]
    assert result == {
        "healthy": True,
        "status": 200,
        "error": "",
        "attempts": 2,
        "elapsed": 0.123,
        "phase": "watch",
    }


@given(
    statuses=st.lists(st.sampled_from([200, 204, 500, 503, NO_ANSWER]), min_size=1, max_size=30),
    seconds=st.floats(min_value=0, max_value=10),
    interval=st.floats(min_value=0.1, max_value=3),
)
@example(statuses=[200], seconds=5.999999999999998, interval=0.1)
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
        if self.path == "/slow":  # answers healthy, but only after a second
            time.sleep(1.0)
        codes = {"/health": 200, "/sick": 503, "/moved": 302, "/slow": 200}
        # /named: healthy only for the Host an edge routes the app by
        if self.path == "/named":
            codes["/named"] = 200 if self.headers.get("Host") == "shop.test" else 404
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


def test_http_probe_sends_the_host_header_it_is_given(server: str) -> None:
    assert http_probe(server + "/named", timeout=5, host="shop.test")() == (200, "")
    assert http_probe(server + "/named", timeout=5)() == (404, "")


def test_http_probe_without_a_listener_reports_no_answer() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, error = http_probe(f"http://127.0.0.1:{port}/health", timeout=2)()
    refused = os.strerror(errno.ECONNREFUSED)
    assert (status, error) == (NO_ANSWER, f"URLError: [Errno {errno.ECONNREFUSED}] {refused}")


def test_http_probe_of_a_url_it_cannot_send_says_why() -> None:
    assert http_probe("not-a-url", timeout=1)() == (
        NO_ANSWER,
        "ValueError: unknown url type: 'not-a-url'",
    )


def test_http_probe_counts_an_answer_later_than_its_timeout_as_none(server: str) -> None:
    began = time.monotonic()
    assert http_probe(server + "/slow", timeout=0.2)() == (NO_ANSWER, "TimeoutError: timed out")
    assert time.monotonic() - began < 0.9


# --- run(): the numbers, the container check --------------------------------------


def params(**given: Any) -> dict[str, Any]:
    """The module's parameters as AnsibleModule gives them (defaults filled in)."""
    defaults = {key: spec.get("default") for key, spec in health_probe.ARGUMENT_SPEC.items()}
    return {**defaults, "url": "http://127.0.0.1:1/health", "seconds": 2.0, **given}


class Docker:
    """Answers docker inspect with canned output, and keeps the command lines."""

    def __init__(self, out: str, rc: int = 0) -> None:
        self.answer = (rc, out, "" if rc == 0 else "Error: No such container: x")
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        return self.answer


def probed(statuses: list[int], docker: Docker, **given: Any) -> dict[str, Any]:
    fake = FakeTime(statuses)
    return health_probe.run(params(**given), docker, fake.probe, fake.clock, fake.sleep)


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ({}, ""),
        ({"seconds": 0.0, "watch_seconds": 0.0}, ""),
        ({"seconds": -1.0}, "seconds must not be below 0, got -1.0"),
        ({"watch_seconds": -0.5}, "watch_seconds must not be below 0, got -0.5"),
        ({"interval": 0.0}, "interval must be above 0, got 0.0"),
        ({"timeout": -2.0}, "timeout must be above 0, got -2.0"),
        (
            {"interval": 0.0, "seconds": -3.0},
            "interval must be above 0, got 0.0; seconds must not be below 0, got -3.0",
        ),
        (
            {"url": "file:///etc/shadow"},
            "url must be an http:// or https:// URL, got 'file:///etc/shadow'",
        ),
        ({"url": "https://127.0.0.1/health"}, ""),
    ],
)
def test_params_error(given: dict[str, Any], error: str) -> None:
    assert health_probe.params_error(params(**given)) == error


def test_negative_seconds_are_refused_before_any_probe() -> None:
    docker = Docker("true 0 running 0")
    fake = FakeTime([200])
    result = health_probe.run(params(seconds=-1.0), docker, fake.probe, fake.clock, fake.sleep)
    assert result == {
        "failed": True,
        "changed": False,
        "msg": "health_probe: seconds must not be below 0, got -1.0",
    }
    assert fake.probed_at == []
    assert docker.calls == []


@pytest.mark.parametrize(
    ("answer", "healthy", "phase"),
    [
        ("true 0 running 0", True, "wait"),
        ("true 2 running 0", False, "container"),
        ("false 0 exited 3", False, "container"),
    ],
)
def test_a_healthy_url_needs_a_container_that_runs_and_never_restarted(
    answer: str, healthy: bool, phase: str
) -> None:
    docker = Docker(answer)
    result = probed([200], docker, container="melk-ai-blue")
    assert (result["healthy"], result["phase"]) == (healthy, phase)
    assert result["state"] == parse_state(0, answer)
    assert docker.calls == [
        ["docker", "inspect", "--type", "container", "--format", STATE_FORMAT, "melk-ai-blue"]
    ]


def test_a_container_that_is_gone_is_unhealthy() -> None:
    result = probed([200], Docker("", rc=1), container="melk-ai-blue", mode="ready")
    assert (result["healthy"], result["phase"], result["state"]) == (False, "container", {})


def test_the_container_is_not_inspected_after_failed_probes_or_without_a_name() -> None:
    docker = Docker("true 0 running 0")
    assert probed([503], docker, container="melk-ai-blue")["phase"] == "wait"
    assert probed([200], docker)["healthy"] is True
    assert docker.calls == []


@pytest.mark.parametrize("mode", ["wait", "ready"])
def test_run_sleeps_on_the_given_clock_between_probes(mode: str) -> None:
    fake = FakeTime([503, 200])
    given = params(mode=mode, interval=0.05)
    result = health_probe.run(given, Docker(""), fake.probe, fake.clock, fake.sleep)
    assert fake.probed_at == pytest.approx([0.0, 0.05])
    assert (result["healthy"], result["attempts"]) == (True, 2)


def test_run_counts_the_given_status_codes_as_healthy() -> None:
    docker = Docker("")
    assert probed([503], docker, status_codes=[503], seconds=5.0)["healthy"] is True
    assert probed([200], docker, status_codes=[503], seconds=0.0)["healthy"] is False


def test_run_paces_ready_mode_on_the_given_clock() -> None:
    fake = FakeTime([200])
    given = params(mode="ready", watch_seconds=0.1, interval=0.05)
    result = health_probe.run(given, Docker(""), fake.probe, fake.clock, fake.sleep)
    assert fake.probed_at == pytest.approx([0.0, 0.05, 0.1])
    assert fake.slept == pytest.approx([0.05, 0.05])
    assert (result["healthy"], result["phase"], result["attempts"]) == (True, "watch", 3)


def test_run_probes_the_url_with_the_given_timeout(server: str) -> None:
    given = params(url=server + "/slow", timeout=0.2, seconds=0.0)
    result = health_probe.run(given, Docker(""))
    assert (result["healthy"], result["status"], result["error"]) == (
        False,
        NO_ANSWER,
        "TimeoutError: timed out",
    )


def test_main_refuses_negative_seconds_with_a_clear_message() -> None:
    result = run_module(health_probe.main, {"url": "http://127.0.0.1:1/", "seconds": -1})
    assert result["rc"] == 1
    assert result["failed"] is True
    assert result["msg"] == "health_probe: seconds must not be below 0, got -1.0"


def test_main_probes_a_real_server(server: str) -> None:
    args = {"url": server + "/health", "mode": "ready", "seconds": 2, "watch_seconds": 0.2}
    result = run_module(health_probe.main, {**args, "interval": 0.1})
    assert result["rc"] == 0
    assert (result["healthy"], result["status"], result["phase"]) == (True, 200, "watch")
    assert result["changed"] is False


def test_main_probes_in_check_mode_too(server: str) -> None:
    args = {"url": server + "/health", "seconds": 0, "_ansible_check_mode": True}
    result = run_module(health_probe.main, args)
    assert "skipped" not in result
    assert (result["rc"], result["healthy"], result["status"]) == (0, True, 200)


@pytest.mark.parametrize(
    ("answer", "healthy", "phase"),
    [("true 0 running 0", True, "wait"), ("true 1 running 0", False, "container")],
)
def test_main_checks_the_container_with_docker_inspect(
    server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    healthy: bool,
    phase: str,
) -> None:
    """A stand-in docker on PATH (no engine needed): main() runs it through the module's
    run_command, and judges its answer."""
    docker = tmp_path / "docker"
    docker.write_text(f'#!/bin/sh\necho "$@" >> "$0.calls"\necho "{answer}"\n')
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    args = {"url": server + "/health", "seconds": 0, "container": "melk-ai-blue"}
    result = run_module(health_probe.main, args)
    assert (result["rc"], result["healthy"], result["phase"]) == (0, healthy, phase)
    assert result["state"] == parse_state(0, answer)
    calls = (tmp_path / "docker.calls").read_text()
    assert calls == f"inspect --type container --format {STATE_FORMAT} melk-ai-blue\n"


# --- the verdict (msg) -----------------------------------------------------------------

# The messages the role's assert tasks rendered before the module said why itself
# (tasks/ready.yml, watch.yml, wait.yml): the module's msg must read the same.
OLD_READY = (
    "health check failed: {{ label }}"
    "{%- if r.phase == 'wait' %} was not healthy within {{ deadline }} s;"
    "{%- elif r.phase == 'watch' %} turned unhealthy during the {{ watch }} s watch;"
    "{%- else %} is {{ r.state.status | default('gone') }}"
    " (exit code {{ r.state.exit_code | default('?') }},"
    " restarted {{ r.state.restarts | default('?') }} times) after {{ watch }} s"
    "{%- endif %}"
    "{%- if r.phase != 'container' %} last probe of {{ url }} gave"
    " {{ ('HTTP ' ~ r.status) if r.status > 0"
    " else ('no answer (' ~ (r.error | truncate(160)) ~ ')') }}"
    "{%- endif %}."
)
OLD_WATCH = (
    "health check failed: {{ label }} turned unhealthy during the"
    " {{ watch }} s watch; {{ url }} gave"
    " {{ ('HTTP ' ~ r.status) if r.status > 0"
    " else ('no answer (' ~ (r.error | truncate(160)) ~ ')') }}."
)
OLD_WAIT = (
    "health check failed: {{ label }} was not healthy within"
    " {{ deadline }} s; last probe of {{ url }} gave"
    " {{ ('HTTP ' ~ r.status) if r.status > 0"
    " else ('no answer (' ~ (r.error | truncate(160)) ~ ')') }}."
)
OLD = {"ready": OLD_READY, "watch": OLD_WATCH, "wait": OLD_WAIT}
PHASES = {"ready": ["wait", "watch", "container"], "watch": ["watch"], "wait": ["wait"]}


def old_message(mode: str, result: dict[str, Any], label: str, url: str, seconds: float,
                watch: float) -> str:  # fmt: skip
    from jinja2 import Environment

    deadline = seconds if mode != "watch" else 0
    window = watch if mode == "ready" else seconds
    return (
        Environment()
        .from_string(OLD[mode])
        .render(r=result, label=label, url=url, deadline=deadline, watch=window)
    )


SECONDS = st.one_of(st.integers(0, 600), st.sampled_from([0.5, 2.5, 0.2, 1.5]))
ERRORS = st.text(alphabet=st.sampled_from(list("ab :()")), max_size=300)
STATES = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {
            "running": st.booleans(),
            "restarts": st.integers(0, 3),
            "status": st.sampled_from(["running", "exited", "restarting"]),
            "exit_code": st.integers(0, 255),
        }
    ),
)


@given(
    mode=st.sampled_from(["ready", "watch", "wait"]),
    pick=st.integers(0, 2),
    status=st.sampled_from([-1, 200, 302, 404, 503]),
    error=ERRORS,
    seconds=SECONDS,
    watch=SECONDS,
    state=STATES,
    label=st.sampled_from(["", "new release 1a2b3c4d5e6f (slot green)"]),
)
@example(mode="wait", pick=0, status=-1, error="refused " * 40, seconds=30, watch=2, state={},
         label="")  # fmt: skip
def test_the_verdict_reads_as_the_role_s_assert_did(
    mode: str, pick: int, status: int, error: str, seconds: float, watch: float,
    state: dict[str, Any], label: str,
) -> None:  # fmt: skip
    phases = PHASES[mode]
    phase = phases[pick % len(phases)]
    url = "http://127.0.0.1:18002/health"
    result = {"healthy": False, "phase": phase, "status": status, "error": error, "state": state}
    given_params = params(url=url, mode=mode, seconds=float(seconds), watch_seconds=float(watch))
    given_params["label"] = label
    expected = old_message(mode, result, label or url, url, seconds, watch)
    assert health_probe.verdict(result, given_params) == expected


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("x" * 165, "x" * 165),
        ("word " * 40, ("word " * 31).rstrip() + "..."),
        ("y" * 166, "y" * 157 + "..."),
    ],
)
def test_truncated_is_jinja_s_truncate(text: str, cut: str) -> None:
    from jinja2 import Environment

    assert health_probe.truncated(text) == cut
    assert Environment().from_string("{{ t | truncate(160) }}").render(t=text) == cut


@pytest.mark.parametrize(
    ("statuses", "fail", "failed"),
    [([503], True, True), ([200], True, False), ([503], False, False)],
)
def test_fail_unhealthy_fails_only_an_unhealthy_result_and_keeps_the_probes(
    statuses: list[int], fail: bool, failed: bool
) -> None:
    result = probed(statuses, Docker(""), mode="wait", seconds=1.0, fail_unhealthy=fail,
                    label="the app")  # fmt: skip
    assert result["failed"] is failed
    assert result["msg"] == (
        "healthy: the app"
        if statuses == [200]
        else "health check failed: the app was not healthy within 1 s; last probe of "
        "http://127.0.0.1:1/health gave HTTP 503."
    )
    assert "probes" in result and "status" in result


# --- against the real engine ---------------------------------------------------------


@pytest.mark.docker
def test_the_container_check_against_the_real_engine() -> None:
    name = f"melk-unit-probe-{uuid.uuid4().hex[:8]}"
    started = real_docker(
        ["docker", "run", "--detach", "--pull", "never", "--name", name,
         "melk-testbed/busybox:1", "sleep", "60"]
    )  # fmt: skip
    assert started[0] == 0, started[2]
    try:
        fake = FakeTime([200])
        running = health_probe.run(
            params(container=name), real_docker, fake.probe, fake.clock, fake.sleep
        )
        assert (running["healthy"], running["state"]["status"]) == (True, "running")
        assert real_docker(["docker", "kill", name])[0] == 0
        fake = FakeTime([200])  # a new run: its own clock
        killed = health_probe.run(
            params(container=name), real_docker, fake.probe, fake.clock, fake.sleep
        )
        assert (killed["healthy"], killed["phase"], killed["state"]["running"]) == (
            False,
            "container",
            False,
        )
    finally:
        real_docker(["docker", "rm", "--force", name])
