"""cdrunner.events: simplifying ansible-runner events and the live output lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cdrunner_fakes import failed, ok, raw, stats, unreachable
from hypothesis import given
from hypothesis import strategies as st

from cdrunner.events import CENSORED_NOTE, Event, format_event, simplify

CENSORED = {"censored": "the output has been hidden due to the fact that 'no_log: true' ..."}


def test_simplify_a_task_result() -> None:
    event = simplify(
        ok(role="app_deploy", task="Start", action="community.docker.docker_container")
    )
    assert event == Event(
        kind="runner_on_ok",
        host="web1",
        play="Deploy",
        task="Start",
        role="app_deploy",
        action="docker_container",
        msg="fine",
        duration=0.5,
        created=datetime(2026, 1, 1, 10, tzinfo=UTC),
    )


def test_simplify_stats_reads_set_stats_data() -> None:
    event = simplify(stats(failures={"web1": 1}, dark={"web2": 1}, releases={"web1": {"x": 1}}))
    assert event.stats is not None
    assert event.stats.failures == {"web1": 1}
    assert event.stats.dark == {"web2": 1}
    assert event.stats.custom == {"melk_release": {"web1": {"x": 1}}}


@pytest.mark.parametrize(
    "broken",
    [
        {"event": "playbook_on_stats", "event_data": {"failures": "x", "artifact_data": None}},
        {"event": "runner_on_ok", "event_data": None},
        {"event": "runner_on_ok", "created": "not a time", "event_data": {"duration": "1"}},
        {},
    ],
)
def test_simplify_tolerates_odd_events(broken: dict[str, Any]) -> None:
    event = simplify(broken)
    assert event.duration is None and event.created is None


@pytest.mark.parametrize("res", [CENSORED, {**CENSORED, "msg": "s3cret-value"}])
def test_censored_result_keeps_no_message(res: dict[str, Any]) -> None:
    """A no_log result's msg is dropped here already, should Ansible ever leave one."""
    event = simplify(raw("runner_on_failed", res=res))
    assert event.censored and event.msg == ""


@pytest.mark.parametrize(
    ("res", "bad"),
    [
        ({"msg": "Validation of arguments failed", "argument_errors": ["missing app_image"]}, True),
        ({"msg": "Validation of arguments failed", "argument_errors": []}, False),
        ({"msg": "argument_errors: [x]"}, False),
        (CENSORED, False),
    ],
)
def test_bad_arguments_is_read_from_the_result_field(res: dict[str, Any], bad: bool) -> None:
    assert simplify(raw("runner_on_failed", res=res)).bad_arguments is bad


def test_list_message_is_joined() -> None:
    assert simplify(failed(msg=["a", "b"])).msg == "a\nb"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (ok(), "ok"),
        (ok(res={"changed": True}), "changed"),
        (failed(), "failed"),
        (failed(ignore_errors=True), "ignored"),
        (unreachable(), "unreach"),
        (raw("runner_on_skipped"), "skipped"),
        (raw("runner_on_start"), ""),
    ],
)
def test_status(event: dict[str, Any], status: str) -> None:
    assert simplify(event).status == status


def test_format_ok_line() -> None:
    line = format_event(
        simplify(
            ok(
                "melk-e2e-1",
                "Start the new release in slot green",
                role="app_deploy",
                duration=0.84,
            )
        )
    )
    assert line == "ok      melk-e2e-1    app_deploy : Start the new release in slot green  (0.8 s)"


def test_format_failure_adds_the_message_indented() -> None:
    line = format_event(simplify(failed(msg="health check failed\nafter 30 s")), host_width=6)
    assert line is not None
    assert line.splitlines() == [
        "failed  web1    Do something  (0.5 s)",
        "        health check failed",
        "        after 30 s",
    ]


def test_format_censored_failure_prints_no_data() -> None:
    res = {**CENSORED, "msg": "s3cret-value"}
    line = format_event(simplify(raw("runner_on_failed", res=res)))
    assert line is not None
    assert CENSORED_NOTE in line and "s3cret" not in line


def test_format_only_reads_msg() -> None:
    res = {"msg": "could not start", "invocation": {"module_args": {"env": {"T": "s3cret-value"}}}}
    line = format_event(simplify(raw("runner_on_failed", res=res)))
    assert line is not None and "s3cret" not in line


def test_format_debug_shows_its_message() -> None:
    line = format_event(simplify(ok(action="ansible.builtin.debug", res={"msg": "already serves"})))
    assert line is not None and line.endswith("\n        already serves")


def test_format_long_message_is_cut() -> None:
    line = format_event(simplify(failed(msg="x" * 5000)))
    assert line is not None and len(line) < 2200 and line.endswith("[...]")


@pytest.mark.parametrize(
    "event",
    [
        raw("runner_on_skipped"),
        raw("runner_on_start"),
        raw("playbook_on_task_start"),
        raw("verbose"),
        ok(action="ansible.builtin.include_tasks"),
        ok(action="include_role"),
        stats(),
    ],
)
def test_noise_is_not_printed(event: dict[str, Any]) -> None:
    assert format_event(simplify(event)) is None


def test_failed_include_is_printed() -> None:
    assert format_event(simplify(failed(action="ansible.builtin.include_tasks"))) is not None


def test_play_header() -> None:
    assert format_event(simplify(raw("playbook_on_play_start", play="Deploy"))) == "== Deploy"


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789.", min_size=1, max_size=30),
    st.integers(min_value=1, max_value=40),
)
def test_format_aligns_the_task_column(host: str, width: int) -> None:
    line = format_event(simplify(ok(host, "T")), host_width=width)
    assert line is not None
    first = line.splitlines()[0]
    assert first.startswith("ok      " + host)
    assert first.index("T  (") == 8 + max(width, len(host)) + 2
