"""Unit tests of the operations playbooks' code (playbooks/logs.yml, playbooks/run.yml):
the docker command lines (exactly), the log merge, the modules app_logs and app_oneoff
against a table of docker answers and against the real engine (marked docker), and the
input checks of filter_plugins/ops_inputs.py."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import app_logs
import app_oneoff
import pytest
from ansible.module_utils.melk_docker import (
    logs_argv,
    merge_logs,
    network_argv,
    oneoff_argv,
)
from hypothesis import given
from hypothesis import strategies as st
from module_harness import Docker, run_module
from ops_inputs import command_argv, log_lines_error, log_since_error, run_command_error

BUSYBOX = "melk-testbed/busybox:1"


def real(argv: Sequence[str]) -> tuple[int, str, str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


# --------------------------------------------------------------------------- command lines


def test_logs_argv_exactly() -> None:
    assert logs_argv("melk-ai-blue", 100, None) == [
        "docker", "logs", "--timestamps", "--tail", "100", "melk-ai-blue",
    ]  # fmt: skip
    assert logs_argv("melk-ai-blue", 5, "10m") == [
        "docker", "logs", "--timestamps", "--tail", "5", "--since", "10m", "melk-ai-blue",
    ]  # fmt: skip


def test_network_argv_exactly() -> None:
    assert network_argv("melk-ai-blue") == [
        "docker", "inspect", "--type", "container", "--format", "{{.HostConfig.NetworkMode}}",
        "melk-ai-blue",
    ]  # fmt: skip


def test_oneoff_argv_exactly() -> None:
    argv = oneoff_argv(
        "melk-ai-run-1",
        "reg.example/melk-ai:abc",
        ["sh", "-c", "echo hi; exit 3"],
        "/opt/melk-ai/app.env",
        "bridge",
        {"io.melk.sha": "abc", "io.melk.oneoff": "melk-ai"},
        0,
    )
    assert argv == [
        "docker", "run", "--rm", "--pull", "never", "--name", "melk-ai-run-1",
        "--network", "bridge", "--env-file", "/opt/melk-ai/app.env",
        "--label", "io.melk.oneoff=melk-ai", "--label", "io.melk.sha=abc",
        "reg.example/melk-ai:abc", "sh", "-c", "echo hi; exit 3",
    ]  # fmt: skip


def test_oneoff_argv_with_a_timeout_and_nothing_optional() -> None:
    assert oneoff_argv("n", "img", ["--help"], None, None, {}, 30) == [
        "timeout", "--kill-after=10", "30",
        "docker", "run", "--rm", "--pull", "never", "--name", "n", "img", "--help",
    ]  # fmt: skip


@given(command=st.lists(st.text(), min_size=1, max_size=5))
def test_oneoff_argv_passes_the_command_as_it_is_after_the_image(command: list[str]) -> None:
    argv = oneoff_argv("n", "img", command, "/e", "net", {"k": "v"}, 0)
    assert argv[argv.index("img") + 1 :] == command


# --------------------------------------------------------------------------- merge_logs

T1 = "2026-12-05T20:00:01.000000001Z"
T2 = "2026-12-05T20:00:01.500000000Z"
T3 = "2026-12-05T20:00:02.000000000Z"


def test_merge_logs_orders_both_streams_by_time() -> None:
    stdout = f"{T1} started\n{T3} request\n"
    stderr = f"{T2} warning: slow\n"
    assert merge_logs(stdout, stderr) == [f"{T1} started", f"{T2} warning: slow", f"{T3} request"]


def test_merge_logs_keeps_stdout_first_on_a_tie_and_continuation_lines_in_place() -> None:
    stdout = f"{T2} out\n{T3} traceback\n  continued\n"
    stderr = f"{T2} err\n"
    assert merge_logs(stdout, stderr) == [
        f"{T2} out", f"{T2} err", f"{T3} traceback", "  continued",
    ]  # fmt: skip
    assert merge_logs("", "") == []


# --------------------------------------------------------------------------- app_logs

LOGS = ["docker", "logs"]


def test_app_logs_returns_the_merged_lines() -> None:
    docker = Docker((LOGS, (0, f"{T3} b\n", f"{T1} a\n")))
    result = app_logs.run({"name": "melk-ai-blue", "lines": 2, "since": "10m"}, docker)
    assert result == {"changed": False, "found": True, "lines": [f"{T1} a", f"{T3} b"]}
    assert docker.calls == [logs_argv("melk-ai-blue", 2, "10m")]


def test_app_logs_reports_a_missing_container_and_fails_on_other_errors() -> None:
    gone = Docker((LOGS, (1, "", "Error response from daemon: No such container: x\n")))
    assert app_logs.run({"name": "x", "lines": 5}, gone) == {
        "changed": False, "found": False, "lines": [],
    }  # fmt: skip
    broken = Docker((LOGS, (1, "", "configured logging driver does not support reading\n")))
    result = app_logs.run({"name": "x", "lines": 5}, broken)
    assert result["failed"] is True
    assert "logging driver" in result["msg"]
    assert app_logs.run({"name": "x", "lines": 0}, broken)["failed"] is True


# --------------------------------------------------------------------------- app_oneoff

INSPECT = ["docker", "inspect"]
RUN = ["docker", "run"]
PARAMS = {
    "name": "melk-ai-run-1",
    "image": "reg/melk-ai:abc",
    "command": ["sh", "-c", "echo hi; exit 3"],
    "env_file": "/opt/melk-ai/app.env",
    "network_from": "melk-ai-blue",
    "labels": {},
    "timeout": 0,
}


def test_oneoff_runs_on_the_serving_containers_network_and_returns_the_exit_code() -> None:
    docker = Docker((INSPECT, (0, "bridge\n", "")), (RUN, (3, "hi\n", "oops\n")))
    result = app_oneoff.run(PARAMS, False, docker)
    assert docker.calls == [
        network_argv("melk-ai-blue"),
        oneoff_argv(
            "melk-ai-run-1", "reg/melk-ai:abc", ["sh", "-c", "echo hi; exit 3"],
            "/opt/melk-ai/app.env", "bridge", {}, 0,
        ),
    ]  # fmt: skip
    assert result["exit_code"] == 3
    assert result["stdout_lines"] == ["hi"] and result["stderr_lines"] == ["oops"]
    assert result["msg"] == "the command failed with exit code 3"
    assert "failed" not in result and result["timed_out"] is False


def test_oneoff_without_the_serving_container_uses_dockers_default_network() -> None:
    docker = Docker((INSPECT, (1, "", "Error: No such container: melk-ai-blue")))
    result = app_oneoff.run(PARAMS, False, docker)
    assert "--network" not in docker.calls[1]
    assert result["network"] == ""
    assert "does not exist" in result["warnings"][0]


def test_oneoff_in_check_mode_runs_nothing() -> None:
    docker = Docker((INSPECT, (0, "bridge\n", "")))
    result = app_oneoff.run(PARAMS, True, docker)
    assert [call[:2] for call in docker.calls] == [INSPECT]
    assert result["changed"] is False and "exit_code" not in result


def test_oneoff_stopped_at_its_timeout_removes_its_container() -> None:
    docker = Docker((RUN, (124, "", "")), (["timeout"], (124, "", "")))
    ticks = iter([0.0, 31.0])
    result = app_oneoff.run(
        {**PARAMS, "network_from": None, "timeout": 30}, False, docker, lambda: next(ticks)
    )
    assert docker.calls[-1] == ["docker", "rm", "--force", "melk-ai-run-1"]
    assert result["timed_out"] is True
    assert "timeout of 30 s" in result["msg"]


@pytest.mark.parametrize(
    ("rc", "elapsed", "timeout", "expected"),
    [
        (124, 30.0, 30, True),
        (137, 45.0, 30, True),
        (-9, 41.0, 30, True),
        (124, 2.0, 30, False),  # the command's own 124, before the timeout
        (3, 60.0, 30, False),
        (124, 60.0, 0, False),
    ],
)
def test_stopped_at_timeout(rc: int, elapsed: float, timeout: int, expected: bool) -> None:
    assert app_oneoff.stopped_at_timeout(rc, elapsed, timeout) is expected


@pytest.mark.parametrize(
    ("rc", "words"),
    [
        (0, "exit code 0"),
        (3, "failed with exit code 3"),
        (125, "docker could not start"),
        (127, "not found"),
    ],
)
def test_describe_names_the_exit_code(rc: int, words: str) -> None:
    text = app_oneoff.describe(rc, False, 0)
    assert words in text and f"exit code {rc}" in text


def test_oneoff_refuses_an_empty_command() -> None:
    assert app_oneoff.run({**PARAMS, "command": []}, False, Docker())["failed"] is True
    result = run_module(app_oneoff.main, {"name": "n", "image": "i", "command": [""]})
    assert result["rc"] == 1 and "empty" in result["msg"]


@pytest.fixture
def name() -> Iterator[str]:
    container = f"melk-unit-{uuid.uuid4().hex[:8]}"
    yield container
    subprocess.run(["docker", "rm", "--force", container], capture_output=True, check=False)


@pytest.mark.docker
def test_oneoff_against_the_engine(name: str, tmp_path: Path) -> None:
    env = tmp_path / "app.env"
    env.write_text("APP_SECRET_TOKEN=unit-sentinel-42\nAPP_GREETING=hello\n")
    params = {**PARAMS, "name": name, "image": BUSYBOX, "env_file": str(env)}
    params["command"] = ["sh", "-c", 'echo "greeting=$APP_GREETING"; echo err >&2; exit 3']
    params["network_from"] = None
    result = app_oneoff.run(params, False, real)
    assert result["exit_code"] == 3
    assert result["stdout_lines"] == ["greeting=hello"]
    assert result["stderr_lines"] == ["err"]
    assert "unit-sentinel-42" not in str(result)
    assert real(["docker", "inspect", name])[0] != 0  # removed (--rm)


@pytest.mark.docker
def test_oneoff_past_its_timeout_is_stopped_and_removed(name: str) -> None:
    params = {**PARAMS, "name": name, "image": BUSYBOX, "env_file": None, "network_from": None}
    # PID 1 of a container ignores SIGTERM unless it handles it: this one does.
    command = ["sh", "-c", "trap 'exit 143' TERM; sleep 60 & wait"]
    result = app_oneoff.run({**params, "command": command, "timeout": 1}, False, real)
    assert result["timed_out"] is True, result
    assert real(["docker", "inspect", name])[0] != 0


@pytest.mark.docker
def test_app_logs_against_the_engine(name: str) -> None:
    started = real(
        [
            "docker",
            "run",
            "--name",
            name,
            BUSYBOX,
            "sh",
            "-c",
            "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three",
        ]
    )
    assert started[0] == 0, started
    result = app_logs.run({"name": name, "lines": 2}, real)
    assert [line.split(" ", 1)[1] for line in result["lines"]] == ["two", "three"]
    everything = app_logs.run({"name": name, "lines": 100}, real)
    assert [line.split(" ", 1)[1] for line in everything["lines"]] == ["one", "two", "three"]


# --------------------------------------------------------------------------- ops_inputs


@pytest.mark.parametrize("value", [1, 100, "20", " 7 ", 100000])
def test_good_lines(value: object) -> None:
    assert log_lines_error(value) == ""


@pytest.mark.parametrize("value", [0, -1, "0", "ten", "1.5", 1.5, True, None, "", 100001, [1]])
def test_bad_lines_are_named(value: object) -> None:
    assert log_lines_error(value).startswith("lines ")


@pytest.mark.parametrize(
    "value",
    ["", None, "10m", "1h30m", "1.5h", "45s", "2026-12-05", "2026-12-05T10:00:00Z",
     "2026-12-05T10:00:00.5+01:00", "1764950400"],
)  # fmt: skip
def test_good_since(value: object) -> None:
    assert log_since_error(value) == ""


@pytest.mark.parametrize(
    "value", ["yesterday", "10", "m", "10 m", "-10m", "10m; rm -rf /", "{{ '10m' }}", 10, ["10m"]]
)
def test_bad_since_is_named(value: object) -> None:
    assert log_since_error(value).startswith("since ")


@pytest.mark.parametrize(
    ("value", "argv"),
    [
        ('sh -c "echo hi; exit 3"', ["sh", "-c", "echo hi; exit 3"]),
        ("rails db:migrate", ["rails", "db:migrate"]),
        ("echo $HOME '$(x)'", ["echo", "$HOME", "$(x)"]),
        (["python3", "-c", "print(1)"], ["python3", "-c", "print(1)"]),
        (["seq", 3], ["seq", "3"]),
    ],
)
def test_good_commands_and_their_argv(value: object, argv: list[str]) -> None:
    assert run_command_error(value) == ""
    assert command_argv(value) == argv


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "is required"),
        (None, "is required"),
        ([], "is required"),
        ("   ", "names no program"),
        ('sh -c "unclosed', "is invalid"),
        ({"sh": "-c"}, "is invalid"),
        (["sh", True], "is invalid"),
        (["sh", ["-c"]], "is invalid"),
        ("{{ lookup('pipe', 'id') }}", "holds a template"),
        (["sh", "-c", "{% raw %}"], "holds a template"),
        (3, "is invalid"),
    ],
)
def test_bad_commands_are_refused(value: object, why: str) -> None:
    error = run_command_error(value)
    assert error.startswith("command ") and why in error, error
