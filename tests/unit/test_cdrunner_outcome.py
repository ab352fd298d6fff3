"""cdrunner.outcome: the exit code and the per-host report, from events."""

from __future__ import annotations

from typing import Any

import pytest
from cdrunner_fakes import (
    SHA_A,
    SHA_B,
    at,
    failed,
    ok,
    raw,
    record,
    refused,
    stats,
    unreachable,
)
from hypothesis import given
from hypothesis import strategies as st

from cdrunner.events import simplify
from cdrunner.outcome import (
    ROLLED_BACK_MARK,
    ExitCode,
    HostReport,
    classify,
    host_report,
    host_reports,
    hosts_in,
    release_data,
)

ROLLED = (
    "deploy of bbbbbbbbbbbb failed at step 'Health check': unhealthy. "
    f"{ROLLED_BACK_MARK}: release aaaaaaaaaaaa serves again."
)


def simple(*events: dict[str, Any]) -> list[Any]:
    return [simplify(e) for e in events]


CASES: dict[str, tuple[list[dict[str, Any]], int, ExitCode]] = {
    "success": (
        [ok(), stats(releases={"web1": record(SHA_A, SHA_B)})],
        0,
        ExitCode.SUCCESS,
    ),
    "success without set_stats": ([ok(), stats()], 0, ExitCode.SUCCESS),
    "bad input": (
        [refused("web1"), refused("web2"), stats(failures={"web1": 1, "web2": 1})],
        2,
        ExitCode.REFUSED,
    ),
    "unreachable": (
        [ok(), unreachable("web2"), stats(dark={"web2": 1})],
        4,
        ExitCode.UNREACHABLE,
    ),
    "rolled back (set_stats)": (
        [
            failed(msg="health check failed"),
            failed(msg="x"),
            stats(
                failures={"web1": 1},
                releases={"web1": record(SHA_A, SHA_A, "failed", True, "unhealthy")},
            ),
        ],
        2,
        ExitCode.ROLLED_BACK,
    ),
    "rolled back (message only)": (
        [failed(msg=ROLLED), stats(failures={"web1": 1})],
        2,
        ExitCode.ROLLED_BACK,
    ),
    "lock held": (
        [failed(msg="deploy lock held by ci@runner since ..."), stats(failures={"web1": 1})],
        2,
        ExitCode.FAILED,
    ),
    "one host rolled back, one failed to pull": (
        [
            failed("web1", msg=ROLLED),
            failed("web2", msg="image could not be pulled"),
            stats(failures={"web1": 1, "web2": 1}),
        ],
        2,
        ExitCode.FAILED,
    ),
    "interrupted before the recap": ([ok()], 1, ExitCode.FAILED),
    "ansible error, no events": ([], 4, ExitCode.FAILED),
    "non-zero rc and a clean recap": ([ok(), stats()], 2, ExitCode.FAILED),
    "refused wins over everything": (
        [refused(), unreachable("web2"), stats(dark={"web2": 1})],
        2,
        ExitCode.REFUSED,
    ),
}


@pytest.mark.parametrize(("events", "rc", "code"), CASES.values(), ids=CASES.keys())
def test_classify(events: list[dict[str, Any]], rc: int, code: ExitCode) -> None:
    assert classify(simple(*events), rc) is code


def test_ignored_failure_in_validation_is_not_a_refusal() -> None:
    events = simple(
        refused() | {"event_data": {**refused()["event_data"], "ignore_errors": True}},
        stats(failures={"web1": 1}),
    )
    assert classify(events, 2) is ExitCode.FAILED


@given(st.lists(st.sampled_from(["ok", "fail", "unreach", "skip"]), max_size=12), st.integers(0, 8))
def test_rc_zero_is_always_success(kinds: list[str], rc_other: int) -> None:
    makers = {
        "ok": ok(),
        "fail": failed(ignore_errors=True),
        "unreach": unreachable(),
        "skip": raw("runner_on_skipped"),
    }
    events = simple(*(makers[k] for k in kinds))
    assert classify(events, 0) is ExitCode.SUCCESS
    if rc_other:
        assert classify(events, rc_other) is not ExitCode.SUCCESS


def test_report_from_set_stats() -> None:
    events = simple(
        ok(created=at(0)),
        ok(created=at(42.5)),
        stats(releases={"web1": record(SHA_A, SHA_B)}, created=at(43)),
    )
    assert host_report(events, "web1") == HostReport(
        "web1", "succeeded", SHA_A, SHA_B, "healthy", False, 42.5, ""
    )


def test_report_first_deploy_has_no_before() -> None:
    events = simple(ok(), stats(releases={"web1": record(None, SHA_B)}))
    report = host_report(events, "web1")
    assert report.before is None and report.after == SHA_B


def test_report_of_a_rollback_keeps_the_message() -> None:
    rec = record(SHA_A, SHA_A, "failed", True, "unhealthy", "Health check: never healthy")
    events = simple(failed(msg=ROLLED), stats(failures={"web1": 1}, releases={"web1": rec}))
    report = host_report(events, "web1")
    assert (report.result, report.rolled_back, report.health) == ("failed", True, "unhealthy")
    assert report.message == "Health check: never healthy"


def test_report_failure_after_the_roles_reported() -> None:
    events = simple(
        failed(msg="prune failed"),
        stats(failures={"web1": 1}, releases={"web1": record(SHA_A, SHA_B)}),
    )
    report = host_report(events, "web1")
    assert (report.result, report.after, report.message) == ("failed", SHA_B, "prune failed")


def test_noop_report() -> None:
    events = simple(ok(), stats(releases={"web1": record(SHA_A, SHA_A, "noop")}))
    assert host_report(events, "web1").result == "noop"


@pytest.mark.parametrize(
    ("events", "result", "message"),
    [
        (
            [unreachable(msg="Host key verification failed."), stats(dark={"web1": 1})],
            "unreachable",
            "Host key verification failed.",
        ),
        ([refused(msg="Refused: sha"), stats(failures={"web1": 1})], "refused", "Refused: sha"),
        ([failed(msg="lock held"), stats(failures={"web1": 1})], "failed", "lock held"),
        ([ok(), stats()], "succeeded", ""),
        ([ok()], "interrupted", ""),
        (
            [ok(play="Validate the request (controller only, no host is contacted)"), stats()],
            "not run",
            "",
        ),
    ],
)
def test_report_without_set_stats(events: list[dict[str, Any]], result: str, message: str) -> None:
    report = host_report(simple(*events), "web1")
    assert (report.result, report.message) == (result, message)
    assert (report.before, report.after, report.health) == (None, None, "unknown")


def test_hosts_in_order_including_recap_only_hosts() -> None:
    events = simple(ok("b"), ok("a"), ok("b"), stats(dark={"c": 1}, ok_hosts=("a", "b")))
    assert hosts_in(events) == ["b", "a", "c"]
    assert [r.host for r in host_reports(events)] == ["b", "a", "c"]


@pytest.mark.parametrize(
    "custom",
    [{}, {"melk_release": "nope"}, {"melk_release": {"web1": "nope"}}],
)
def test_release_data_ignores_malformed_stats(custom: dict[str, Any]) -> None:
    event = simplify(stats())
    assert event.stats is not None
    odd = type(event.stats)(custom=custom)
    assert release_data(odd) == {}
    assert release_data(None) == {}


def test_duration_unknown_without_timestamps() -> None:
    event = ok()
    event["created"] = None
    assert host_report(simple(event), "web1").seconds is None
