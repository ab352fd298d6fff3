"""The test bed's one way to run a playbook, its environment, its group_vars,
and the figures of a load that demo, bench, e2e and faults share (no engine; wrk,
which make testbed installs, for the wrk tests)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from testbed import ROOT, bed, servers, wrk
from testbed.load import Load, Outcome, Report, sent_after, served_chain
from testbed.playbook import Command, ansible_env, error_message, playbook_args
from testbed.wrk import MARK, command, keepalive_load


def ok(start: float, version: str) -> Outcome:
    return Outcome(start, start + 0.1, "/version", 200, version, "")


def test_ansible_env_uses_this_checkout_and_adds_callbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANSIBLE_CALLBACKS_ENABLED", "mine")
    monkeypatch.setenv("ANSIBLE_STRATEGY", "free")
    env = ansible_env(Path("/cp"), callbacks=["ansible.posix.profile_tasks"], EXTRA="1")
    assert env["ANSIBLE_CONFIG"] == str(ROOT / "ansible.cfg")
    assert env["ANSIBLE_SSH_CONTROL_PATH_DIR"] == "/cp"
    assert env["ANSIBLE_CALLBACKS_ENABLED"] == "mine,ansible.posix.profile_tasks"
    assert env["ANSIBLE_STRATEGY"] == "free" and env["EXTRA"] == "1"
    assert ansible_env(Path("/cp"))["ANSIBLE_CALLBACKS_ENABLED"] == "mine"


def test_playbook_args_are_what_a_user_types_at_the_root() -> None:
    args = playbook_args("deploy.yml", ROOT / ".testbed" / "inv.json", "-e", "sha=abc")
    assert args == [
        ".venv/bin/ansible-playbook",
        "-i",
        ".testbed/inv.json",
        "playbooks/deploy.yml",
        "-e",
        "sha=abc",
    ]
    program = playbook_args("status.yml", Path("/elsewhere/inv"), program="ansible-playbook")
    assert program[:3] == ["ansible-playbook", "-i", "/elsewhere/inv"]


@pytest.mark.parametrize(
    ("program", "runs"),
    [
        (".venv/bin/ansible-playbook", str(ROOT / ".venv/bin/ansible-playbook")),
        ("ansible-playbook", str(ROOT / ".venv/bin/ansible-playbook")),
        ("/bin/sh", "/bin/sh"),
        ("no-such-tool-here", "no-such-tool-here"),
    ],
)
def test_a_relative_program_is_the_checkouts_and_a_bare_tool_the_venvs(
    program: str, runs: str
) -> None:
    assert Command([program, "x"]).argv() == [runs, "x"]


SCRIPT = (
    "import sys, time\n"
    "print('TASK [app_deploy : Pull the image] ****', flush=True)\n"
    'print(\'fatal: [h]: FAILED! => {"msg": "could not be pulled"}\', flush=True)\n'
    "print('to stderr', file=sys.stderr, flush=True)\n"
    "time.sleep(float(sys.argv[1]))\n"
    "sys.exit(3)\n"
)


def test_a_run_keeps_output_log_exit_code_and_the_task_it_reached(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    command = Command([sys.executable, "-c", SCRIPT, "0"], log=log)
    run = command.run()
    assert run.rc == 3
    assert "to stderr" in run.output and "Pull the image" in run.output
    assert log.read_text() == run.output
    assert command.task == "Pull the image"
    assert error_message(run.output) == "could not be pulled"
    assert run.started > 0 and run.seconds >= 0 and run.command.startswith(sys.executable)


def test_a_run_is_stopped_at_its_time_limit() -> None:
    run = Command([sys.executable, "-c", SCRIPT, "30"], timeout=0.5).run()
    assert run.rc < 0
    assert "its time limit" in run.output
    assert run.seconds < 10


def test_group_vars_deploy_the_sample_app_from_the_test_beds_registry() -> None:
    found = servers.group_vars({"A": "b"}, 3, app_deploy_health_deadline=10)
    assert found["app_env"] == {"A": "b"} and found["app_verify_seconds"] == 3
    assert found["app_deploy_health_deadline"] == 10
    image = str(found["app_image"])
    registry = image.split("/")[0]
    assert found["docker_daemon_options"] == {"insecure-registries": [registry]}


def test_served_chain_and_the_requests_sent_after_a_moment() -> None:
    outcomes = [ok(0, "v1"), ok(1, "v1"), ok(2, "v1"), ok(3, "v2"), ok(4, "v2"), ok(5, "v2")]
    assert served_chain(Report(outcomes)) == "v1 -> v2"
    # a straggler of v1 amid v2 is not a switch back
    straggler = [*outcomes[:4], ok(3.5, "v1"), *outcomes[4:]]
    assert served_chain(Report(straggler)) == "v1 -> v2"
    assert served_chain(Report([])) == "nothing yet"
    assert [o.start for o in sent_after(outcomes, 3)] == [3, 4, 5]


class _Instant(BaseHTTPRequestHandler):
    """Answers every request at once, as maintenance mode's page does; /late after
    LATE_MS milliseconds."""

    def do_GET(self) -> None:
        body = b'{"version": "v1"}'
        if self.path == "/late":
            time.sleep(LATE_MS / 1000)
        self.send_response(503 if self.path == "/bad" else 200)
        self.send_header("X-Release", "v1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


LATE_MS = 40


@pytest.fixture
def instant() -> Iterator[str]:
    """A local server that answers at once: 200, or 503 on /bad (from release v1)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Instant)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize("min_cycle", [0.0, 0.1])
def test_min_cycle_paces_each_worker(instant: str, min_cycle: float) -> None:
    load = Load(instant, workers=2, min_cycle=min_cycle)
    load.start()
    time.sleep(0.55)
    report = load.stop()
    assert all(o.status == 200 for o in report.outcomes)
    if min_cycle:
        # two workers, one request at 0, 0.1, ... 0.5 s each: at most 12
        assert 6 <= report.total <= 12, report.total
    else:
        assert report.total > 20, report.total  # unpaced: as fast as the server answers


@pytest.mark.docker  # needs wrk, which make testbed installs (unit-docker)
@pytest.mark.parametrize("path", ["/", "/bad"])
def test_wrk_counts_answers_as_they_come_and_its_report_still_reads(
    instant: str, path: str
) -> None:
    with keepalive_load(
        instant + path, lead=0, progress=True, connections=2, threads=1, pace_ms=0
    ) as load:
        assert load.wait_for(20, 30.0), load.answers
        seen = load.answers
    assert load.result is not None and MARK not in load.output
    assert load.result.requests >= seen >= 20
    assert load.result.socket_errors == 0
    bad = load.result.requests if path == "/bad" else 0
    assert load.result.non_2xx == bad
    assert load.result.non_2xx_by_release == ({"v1": bad} if bad else {})


@pytest.mark.docker  # needs wrk, which make testbed installs (unit-docker)
def test_wrk_counts_nothing_as_it_goes_unless_asked(instant: str) -> None:
    with keepalive_load(instant, lead=0.5, connections=2, threads=1, pace_ms=0) as load:
        pass
    assert load.result is not None and load.result.requests > 0
    assert load.answers == 0


def test_wrk_script_arguments_follow_the_url() -> None:
    base = ["wrk", "-t1", "-c8", "-d60s", "--timeout=30s", "--latency", "--script", str(wrk.SCRIPT)]
    url = "https://127.0.0.1:8443/version"
    assert command(url, 8, 1, 60) == [*base, url]
    assert command(url, 8, 1, 60, progress=True, pace_ms=250) == [
        *base,
        url,
        "--",
        "progress",
        "pace=250",
    ]
    assert command(url, 8, 1, 60, pace_ms=250)[-2:] == ["--", "pace=250"]
    # wrk refuses more threads than connections: one connection, one thread
    assert command(url, 1, 2, 60)[1:3] == ["-t1", "-c1"]
    # timing every answer pairs requests and answers by thread: one connection each
    timed = command(url, 8, 2, 60, samples=Path("/tmp/s.txt"))
    assert timed[1:3] == ["-t8", "-c8"] and timed[-2:] == ["--", "samples=/tmp/s.txt"]


def test_wrk_samples_are_read_in_the_order_sent_and_a_line_cut_short_is_left_out() -> None:
    text = "12.500000 3.250 200 v2\n11.000000 40.000 502 none\n13.0 1.5 20"
    assert wrk.parse_samples(text) == [
        wrk.Sample(11.0, 40.0, 502, "none"),
        wrk.Sample(12.5, 3.25, 200, "v2"),
    ]


@pytest.mark.docker  # needs wrk, which make testbed installs (unit-docker)
@pytest.mark.parametrize("path", ["/late", "/bad"])
def test_wrk_times_every_answer_it_counts(instant: str, path: str, tmp_path: Path) -> None:
    samples = tmp_path / "samples.txt"
    before = time.time()
    with keepalive_load(instant + path, lead=0, connections=4, samples=samples, pace_ms=0) as load:
        time.sleep(1.0)
    found = wrk.read_samples(samples)
    assert load.result is not None and load.result.requests == len(found) > 10, load.output
    assert all(before <= s.sent <= time.time() for s in found)
    assert {(s.status, s.release) for s in found} == {(503 if path == "/bad" else 200, "v1")}
    latencies = sorted(s.latency_ms for s in found)
    if path == "/late":  # each answer paired with its own request: none faster than the sleep
        assert latencies[0] >= LATE_MS and latencies[len(latencies) // 2] < 10 * LATE_MS
    else:
        assert latencies[len(latencies) // 2] < LATE_MS


@pytest.mark.docker  # needs wrk, which make testbed installs (unit-docker)
def test_wrk_paced_sends_at_most_one_request_per_pace_on_each_connection(instant: str) -> None:
    with keepalive_load(instant, lead=0, connections=2, threads=1, pace_ms=100) as paced:
        time.sleep(1.0)
    with keepalive_load(instant, lead=0, connections=2, threads=1, pace_ms=0) as unpaced:
        time.sleep(1.0)
    assert paced.result is not None and unpaced.result is not None
    # two connections, one request per 100 ms each, for about a second (and the stop)
    assert 2 <= paced.result.requests <= 2 * (paced.result.seconds / 0.1 + 1), paced.output
    assert unpaced.result.requests > 4 * paced.result.requests, unpaced.output


@pytest.mark.docker  # needs wrk, which make testbed installs (unit-docker)
def test_the_suites_keepalive_load_is_paced_unless_told_otherwise(instant: str) -> None:
    """The e2e and fault suites' wrk sends one request per connection every TEST_PACE_MS."""
    with keepalive_load(instant, lead=0, connections=2, threads=1) as load:
        time.sleep(1.0)
    assert load.result is not None
    most = 2 * (load.result.seconds / (wrk.TEST_PACE_MS / 1000) + 1)
    assert 2 <= load.result.requests <= most, load.output


def test_a_summary_says_when_each_request_without_an_answer_was_sent() -> None:
    timed_out = Outcome(12.25, 27.3, "/slow?ms=400", 0, "", "TimeoutError")
    reset = Outcome(30.0, 30.1, "/version", 0, "", "ConnectionResetError")
    http_500 = Outcome(31.0, 31.1, "/version", 500, "", "")
    summary = Report([ok(1, "v1"), timed_out, reset, http_500]).summary()
    assert summary == (
        "4 requests (1 slow), 3 failed [TimeoutError x1; ConnectionResetError x1; HTTP 500 x1];"
        " served by v1: 1; no answer: /slow?ms=400 sent at 12.2 s, TimeoutError after 15.1 s;"
        " /version sent at 30.0 s, ConnectionResetError after 0.1 s"
    )
    many = [Outcome(float(i), i + 15.0, "/version", 0, "", "TimeoutError") for i in range(5)]
    last = "/version sent at 2.0 s, TimeoutError after 15.0 s; 2 more"
    assert Report(many).summary().endswith(last)
    assert "no answer" not in Report([ok(1, "v1"), http_500]).summary()


def test_slow_requests_lists_the_last_access_log_lines_at_or_over_the_limit(
    tmp_path: Path,
) -> None:
    line = '10.0.0.1 - - [07/Dec/2026:05:00:00 +0000] "GET /v HTTP/1.1" {status} 17 "-" "wrk" '
    fields = "msec=1796620000.{n:03d} request_time={t} upstream=172.17.0.3:8000"
    lines = [
        line.format(status=s) + fields.format(n=n, t=t)
        for n, (s, t) in enumerate(
            [(200, "0.004"), (200, "1.000"), (499, "15.002"), (200, "0.999"), (502, "2.5")]
        )
    ]
    (tmp_path / "melk-ai.access.log").write_text("\n".join(lines) + "\n")
    (tmp_path / "other.log").write_text(lines[2] + "\n")  # not an app's access log
    logs = str(tmp_path / "*.access.log")

    def listed(limit: int, logs: str = logs) -> list[str]:
        command = bed.slow_requests_command(1.0, limit, logs)
        return subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, check=True
        ).stdout.splitlines()

    prefix = f"{tmp_path / 'melk-ai.access.log'}: "
    assert listed(2) == [prefix + lines[2], prefix + lines[4]]
    assert listed(20) == [prefix + lines[i] for i in (1, 2, 4)]
    assert listed(20, str(tmp_path / "none" / "*.log")) == []
