"""Unit tests of issue 16's items 1-3: the masking of app.env's values
(module_utils/melk_docker.py), the release command's one-off (app_oneoff's mask_env,
output_lines, volumes), its input checks (filter_plugins/ops_inputs.py), the probes
health_probe keeps, and the diagnosis of a failed health check (app_diagnose.cause,
exact messages)."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import app_diagnose
import app_oneoff
import health_probe
import pytest
from ansible.module_utils.melk_docker import (
    CREATED_FORMAT,
    MASK,
    created_argv,
    die_events_argv,
    env_values,
    logs_argv,
    masked,
    oneoff_argv,
    output_tail,
    parse_last_exit,
    parse_state,
    read_env_values,
    run_argv,
    state_argv,
)
from hypothesis import given
from hypothesis import strategies as st
from module_harness import Docker, real_docker
from ops_inputs import release_command_error, release_timeout_error

SECRET = "s3cret-token-value"

# --------------------------------------------------------------------------- masking


def test_env_values_are_the_values_of_4_characters_or_more_longest_first() -> None:
    text = f"A={SECRET}\nB=hello\n# C=commented-out\n\nD=1\nE=true\nF=a=b=c\nG=\n"
    assert env_values(text) == [SECRET, "a=b=c", "hello", "true"]


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        (f"token {SECRET} ok", [SECRET], f"token {MASK} ok"),
        # the longer value first: one that contains another is masked whole
        ("abcdef and abcd", ["abcd", "abcdef"], f"{MASK} and {MASK}"),
        ("nothing here", [SECRET], "nothing here"),
        ("empty values mask nothing", [""], "empty values mask nothing"),
    ],
)
def test_masked(text: str, values: list[str], expected: str) -> None:
    assert masked(text, values) == expected


@given(st.text(min_size=4).filter(lambda v: "\n" not in v and "\r" not in v), st.text())
def test_no_value_survives_masking(value: str, around: str) -> None:
    assert value not in masked(around + value + around, [value]).replace(MASK, "\0")


def test_read_env_values_from_a_file_or_why_not(tmp_path: Path) -> None:
    env = tmp_path / "app.env"
    env.write_text(f"APP_SECRET_TOKEN={SECRET}\n")
    assert read_env_values(str(env)) == ([SECRET], "")
    assert read_env_values(None) == ([], "")
    values, why = read_env_values(str(tmp_path / "missing.env"))
    assert values == [] and why.startswith(f"{tmp_path / 'missing.env'} could not be read")


def test_output_tail_is_the_last_lines_stderr_last_masked() -> None:
    out = "".join(f"line-{i}\n" for i in range(1, 61))
    err = f"token={SECRET}\n"
    tail = output_tail(out, err, 50, [SECRET])
    assert tail == [f"line-{i}" for i in range(12, 61)] + [f"stderr: token={MASK}"]
    assert output_tail(out, err, 0, []) == []


# --------------------------------------------------------------------------- volumes


def test_run_and_oneoff_argv_mount_the_volumes_in_order() -> None:
    volumes = ["melk-ai-data:/data", "/srv/uploads:/uploads:ro"]
    argv = run_argv("n", "img", [], None, {}, "no", 10, volumes)
    assert argv[argv.index("img") - 4 : argv.index("img")] == [
        "--volume", volumes[0], "--volume", volumes[1],
    ]  # fmt: skip
    assert oneoff_argv("n", "img", ["true"], None, None, {}, 0, volumes) == [
        "docker", "run", "--rm", "--pull", "never", "--name", "n",
        "--volume", volumes[0], "--volume", volumes[1], "img", "true",
    ]  # fmt: skip


# --------------------------------------------------------------------------- app_oneoff


def oneoff_params(env: Path, **more: Any) -> dict[str, Any]:
    return {
        "name": "melk-ai-release-1",
        "image": "reg/melk-ai:abc",
        "command": ["python3", "manage.py", "migrate"],
        "env_file": str(env),
        "network_from": None,
        "labels": {},
        "timeout": 0,
        "volumes": ["melk-ai-data:/data"],
        **more,
    }


def test_release_oneoff_masks_its_output_and_returns_the_tail(tmp_path: Path) -> None:
    env = tmp_path / "app.env"
    env.write_text(f"APP_SECRET_TOKEN={SECRET}\nAPP_GREETING=hello\n")
    out = "".join(f"step {i}\n" for i in range(1, 6)) + f"using {SECRET}\n"
    docker = Docker((["docker", "run"], (3, out, "failed: hello\n")))
    result = app_oneoff.run(oneoff_params(env, mask_env=True, output_lines=3), False, docker)
    assert docker.calls == [
        oneoff_argv(
            "melk-ai-release-1", "reg/melk-ai:abc", ["python3", "manage.py", "migrate"],
            str(env), None, {}, 0, ["melk-ai-data:/data"],
        )
    ]  # fmt: skip
    assert result["exit_code"] == 3
    assert result["output_tail"] == ["step 5", f"using {MASK}", f"stderr: failed: {MASK}"]
    assert SECRET not in str(result) and "hello" not in str(result)


def test_release_oneoff_withholds_its_output_when_the_env_file_cannot_be_read(
    tmp_path: Path,
) -> None:
    docker = Docker((["docker", "run"], (0, f"{SECRET}\n", "")))
    params = oneoff_params(tmp_path / "gone.env", mask_env=True, output_lines=50)
    result = app_oneoff.run(params, False, docker)
    assert result["exit_code"] == 0
    assert result["output_tail"] == [] and result["stdout_lines"] == []
    assert "the output is withheld" in result["warnings"][0]


def test_oneoff_without_mask_env_returns_the_output_as_it_is(tmp_path: Path) -> None:
    docker = Docker((["docker", "run"], (0, "plain\n", "")))
    result = app_oneoff.run(oneoff_params(tmp_path / "gone.env"), False, docker)
    assert result["stdout_lines"] == ["plain"] and result["output_tail"] == []


# --------------------------------------------------------------------------- input checks


RULE = "a list of the command and its arguments, such as [python3, manage.py, migrate]"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (None, ""),
        ([], ""),
        (["python3", "manage.py", "migrate"], ""),
        (["sh", "-c", "exit 3"], ""),
        (
            "python3 manage.py migrate",
            f"app_release_command 'python3 manage.py migrate' is invalid: {RULE}",
        ),
        ([""], f"app_release_command [''] is invalid: it names no program; {RULE}"),
        (
            [["nested"]],
            f"app_release_command [['nested']] is invalid (not a string or a list of strings:"
            f" list): {RULE}",
        ),
        (
            ["echo", "{{ x }}"],
            "app_release_command ['echo', '{{ x }}'] is refused: it holds a template,"
            " and nothing is templated",
        ),
        ({"cmd": "x"}, f"app_release_command {{'cmd': 'x'}} is invalid: {RULE}"),
    ],
)
def test_release_command_error(value: object, error: str) -> None:
    assert release_command_error(value) == error


@pytest.mark.parametrize(
    ("value", "good"),
    [(300, True), (1, True), ("60", True), (0, False), (-5, False), ("ten", False), (True, False)],
)
def test_release_timeout_error(value: object, good: bool) -> None:
    error = release_timeout_error(value)
    assert (error == "") is good
    if not good:
        assert error.startswith("app_release_timeout ") and "1 or more" in error


# --------------------------------------------------------------------------- health_probe


class _Answers(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"/login?token={SECRET}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = (f'{{"error": "db down", "token": "{SECRET}"}}' + "x" * 500).encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_probe_keeps_status_time_location_and_200_bytes_of_body_masked(server: str) -> None:
    seen: list[dict[str, Any]] = []
    probe = health_probe.http_probe(f"{server}/health", 2, seen, [SECRET], lambda: 3661.25)
    assert probe() == (500, "")
    health_probe.http_probe(f"{server}/redirect", 2, seen, [SECRET], lambda: 0.0)()
    error, redirect = seen
    assert error["status"] == 500 and error["at"] == "01:01:01.250Z"
    assert error["body"].startswith(f'{{"error": "db down", "token": "{MASK}"}}xxx')
    assert len(error["body"].encode()) == 200
    assert redirect == {
        "status": 302,
        "at": "00:00:00.000Z",
        "location": f"/login?token={MASK}",
        "body": "",
        "error": "",
    }


def test_http_probe_shows_no_body_when_the_values_could_not_be_read(server: str) -> None:
    seen: list[dict[str, Any]] = []
    health_probe.http_probe(f"{server}/redirect", 2, seen, None)()
    assert seen[0]["location"] == "" and seen[0]["body"] == ""


def test_http_probe_records_no_answer() -> None:
    seen: list[dict[str, Any]] = []
    status, error = health_probe.http_probe("http://127.0.0.1:9/health", 1, seen)()
    assert status == -1 and seen[0]["status"] == -1 and seen[0]["error"] == error != ""


def test_excerpt_masks_before_it_cuts() -> None:
    # a value that the cut at 200 bytes would split is masked whole first
    body = ("a" * 195 + SECRET).encode()
    assert health_probe.excerpt(body, [SECRET]) == "a" * 195 + MASK[:5]
    assert health_probe.excerpt(body, None) == ""


# --------------------------------------------------------------------------- app_diagnose

RUNNING = {"running": True, "restarts": 0, "status": "running", "exit_code": 0}
URL = "http://127.0.0.1:18002/health"


def probe(status: int, error: str = "", location: str = "", body: str = "") -> dict[str, Any]:
    return {
        "status": status,
        "at": "12:00:00.000Z",
        "location": location,
        "body": body,
        "error": error,
    }


@pytest.mark.parametrize(
    ("probes", "state", "cause", "message"),
    [
        (
            [probe(-1, "URLError: [Errno 111] Connection refused")],
            {},
            "did not start",
            "the new release did not start: its container does not exist",
        ),
        (
            [],
            {"running": False, "restarts": 0, "status": "created", "exit_code": 0},
            "did not start",
            "the new release did not start: its container was created but never ran",
        ),
        (
            [probe(-1, "URLError: [Errno 111] Connection refused")],
            {"running": False, "restarts": 0, "status": "exited", "exit_code": 4},
            "exited",
            "the new release exited with exit code 4 (exited)",
        ),
        (
            [probe(-1, "URLError: [Errno 111] Connection refused")],
            {"running": True, "restarts": 3, "status": "restarting", "exit_code": 4},
            "restarted",
            "the new release restarted 3 times (it is restarting; last exit code 4)",
        ),
        (
            [probe(200)],
            {"running": True, "restarts": 1, "status": "running", "exit_code": 3},
            "restarted",
            "the new release restarted 1 time (it is running; last exit code 3)",
        ),
        (
            [probe(200), probe(500, body="db down")],
            RUNNING,
            "answered non-2xx",
            f"the new release answered HTTP 500 to {URL}",
        ),
        (
            [probe(302, location="/login")],
            RUNNING,
            "answered non-2xx",
            f"the new release answered HTTP 302 to {URL}, Location: /login",
        ),
        (
            [probe(-1, "TimeoutError: timed out")],
            RUNNING,
            "timed out",
            f"the new release runs but gave no answer to {URL} in time (TimeoutError: timed out)",
        ),
        ([], RUNNING, "timed out", f"the new release runs but was not probed to {URL}"),
        (
            [probe(204)],
            RUNNING,
            "timed out",
            f"the new release answered HTTP 204 to {URL} too late",
        ),
        (
            [probe(299)],
            RUNNING,
            "timed out",
            f"the new release answered HTTP 299 to {URL} too late",
        ),
        ([probe(300)], RUNNING, "answered non-2xx", f"the new release answered HTTP 300 to {URL}"),
        ([probe(199)], RUNNING, "answered non-2xx", f"the new release answered HTTP 199 to {URL}"),
    ],
)
def test_cause(
    probes: list[dict[str, Any]], state: dict[str, Any], cause: str, message: str
) -> None:
    assert app_diagnose.cause(probes, state, URL) == (cause, message)


def test_diagnose_reads_the_state_and_the_log_and_masks_them(tmp_path: Path) -> None:
    env = tmp_path / "app.env"
    env.write_text(f"APP_SECRET_TOKEN={SECRET}\n")
    log = "".join(f"2026-12-05T10:00:{i:02d}.000000000Z line {i}\n" for i in range(60))
    fatal = f"2026-12-05T10:01:00.000000000Z fatal: token {SECRET}\n"
    docker = Docker(
        (["docker", "inspect"], (0, "false 2 restarting 4\n", "")),
        (["docker", "logs"], (0, log, fatal)),
    )
    probes = [probe(-1, "URLError: refused"), probe(500, location=f"/x?{SECRET}", body=SECRET)]
    result = app_diagnose.run(
        {"name": "melk-ai-green", "probes": probes, "url": URL, "env_file": str(env), "lines": 50},
        docker,
    )
    assert docker.calls == [state_argv("melk-ai-green"), logs_argv("melk-ai-green", 50, None)]
    assert result["cause"] == "restarted"
    assert result["logs"][-1] == f"2026-12-05T10:01:00.000000000Z fatal: token {MASK}"
    assert len(result["logs"]) == 50
    assert result["report"][:5] == [
        "cause: the new release restarted 2 times (it is restarting; last exit code 4)",
        "container: restarting, exit code 4, restarted 2 times",
        "last probes (2):",
        "  12:00:00.000Z no answer (URLError: refused)",
        f"  12:00:00.000Z HTTP 500 Location: /x?{MASK} body: {MASK}",
    ]
    assert result["report"][5] == "last 50 log lines (50):"
    assert SECRET not in str(result)


def test_the_last_exit_code_command_lines() -> None:
    assert created_argv("melk-ai-blue") == [
        "docker", "inspect", "--type", "container", "--format", "{{.Created}}", "melk-ai-blue"
    ]  # fmt: skip
    assert die_events_argv("melk-ai-blue", "2026-12-06T09:56:40.1Z", 1796551427.5) == [
        "docker", "events", "--since", "2026-12-06T09:56:40.1Z",
        "--until", "1796551427.500000000",
        "--filter", "type=container", "--filter", "container=melk-ai-blue",
        "--filter", "event=die", "--format", "{{.Actor.Attributes.exitCode}}",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("out", "code"),
    [("4\n4\n3\n", 3), ("137\n", 137), ("", None), ("\n", None), ("x\n", None)],
)
def test_parse_last_exit(out: str, code: int | None) -> None:
    assert parse_last_exit(out) == code


STATE = ["docker", "inspect", "--type", "container", "--format"]


def test_a_release_running_again_after_restarts_shows_the_code_it_last_exited_with(
    tmp_path: Path,
) -> None:
    """docker says exit code 0 while the container runs again; its die events say 4."""
    created = "2026-12-06T09:56:40.123Z"
    docker = Docker(
        ([*STATE, CREATED_FORMAT], (0, created + "\n", "")),
        (STATE, (0, "true 5 running 0\n", "")),
        (["docker", "events"], (0, "4\n4\n4\n4\n4\n", "")),
    )
    params = {"name": "melk-ai-blue", "probes": [], "url": URL, "env_file": None, "lines": 5}
    result = app_diagnose.run(params, docker, wall=lambda: 1796551427.5)
    assert docker.calls[:3] == [
        state_argv("melk-ai-blue"),
        created_argv("melk-ai-blue"),
        die_events_argv("melk-ai-blue", created, 1796551427.5),
    ]
    assert (
        result["message"] == "the new release restarted 5 times (it is running; last exit code 4)"
    )
    assert result["state"]["exit_code"] == 4


def test_unreadable_die_events_leave_the_engines_exit_code() -> None:
    docker = Docker(
        ([*STATE, CREATED_FORMAT], (0, "2026-12-06T09:56:40Z\n", "")),
        (STATE, (0, "true 1 running 0\n", "")),
        (["docker", "events"], (1, "", "permission denied")),
    )
    params = {"name": "x", "probes": [], "url": "", "env_file": None, "lines": 5}
    assert app_diagnose.run(params, docker)["state"]["exit_code"] == 0


@pytest.mark.docker
def test_the_engine_tells_the_last_exit_code_of_a_container_running_again() -> None:
    """A real container that exits with 4 after a moment and is restarted: caught while
    it runs again, its die events give 4 where its state says 0."""
    name = f"melk-unit-diag-{uuid.uuid4().hex[:8]}"
    started = subprocess.run(
        ["docker", "run", "--detach", "--name", name, "--restart", "always",
         "melk-testbed/busybox:1", "sh", "-c", "sleep 2; exit 4"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 30
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = parse_state(*real_docker(state_argv(name))[:2])
            # "restarting" counts as running too, with the exit code kept
            if state and state["status"] == "running" and state["restarts"] > 0:
                break
            time.sleep(0.1)
        assert state["status"] == "running" and state["restarts"] > 0, state
        assert state["exit_code"] == 0  # what the engine says while it runs
        assert app_diagnose.last_exit_code(name, real_docker) == 4
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


def test_diagnose_without_the_env_file_shows_no_log_and_no_body(tmp_path: Path) -> None:
    docker = Docker((["docker", "inspect"], (0, "true 0 running 0\n", "")))
    probes = [probe(500, body=SECRET)]
    params = {
        "name": "x",
        "probes": probes,
        "url": "",
        "env_file": str(tmp_path / "no"),
        "lines": 50,
    }
    result = app_diagnose.run(params, docker)
    assert [call[:2] for call in docker.calls] == [["docker", "inspect"]]
    assert result["logs"] == [] and SECRET not in str(result)
    assert result["message"] == "the new release answered HTTP 500"
    assert "are not shown" in result["warnings"][0]
