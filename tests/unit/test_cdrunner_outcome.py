"""cdrunner.outcome: the exit code and the per-host report, from events."""

from __future__ import annotations

from typing import Any

import pytest
from cdrunner_fakes import (
    ACCEPTED,
    SHA_A,
    SHA_B,
    VALIDATION_PLAY,
    at,
    failed,
    ok,
    raw,
    record,
    refused,
    rejected,
    spec_refused,
    stats,
    unreachable,
)
from hypothesis import given
from hypothesis import strategies as st

from cdrunner.events import CENSORED_NOTE, simplify
from cdrunner.outcome import (
    ExitCode,
    HostReport,
    classify,
    host_report,
    host_reports,
    hosts_in,
    refusal,
    release_data,
    validation_data,
)

# The text the rollback role fails with; it decides nothing, only records do.
ROLLED = (
    "deploy of bbbbbbbbbbbb failed at step 'Health check': unhealthy. "
    "Rolled back automatically: release aaaaaaaaaaaa serves again."
)
BOTH_ACCEPTED = {"web1": ACCEPTED, "web2": ACCEPTED}


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
        [
            refused("web1"),
            refused("web2"),
            stats(
                failures={"web1": 1, "web2": 1}, validation={"web1": rejected(), "web2": rejected()}
            ),
        ],
        2,
        ExitCode.REFUSED,
    ),
    "bad input on one host, the other accepted": (
        [
            refused("web1"),
            stats(failures={"web1": 1}, validation={"web1": rejected(), "web2": ACCEPTED}),
        ],
        2,
        ExitCode.REFUSED,
    ),
    "bad input refused by the argument spec": (
        [spec_refused("web1"), stats(failures={"web1": 1})],
        2,
        ExitCode.REFUSED,
    ),
    "a failure in the validation play without data is not a refusal": (
        [refused("web1"), stats(failures={"web1": 1})],
        2,
        ExitCode.FAILED,
    ),
    "argument errors after the host was accepted are a failure": (
        [
            spec_refused("web1", play="Deploy"),
            stats(failures={"web1": 1}, validation={"web1": ACCEPTED}),
        ],
        2,
        ExitCode.FAILED,
    ),
    "unreachable": (
        [ok(), unreachable("web2"), stats(dark={"web2": 1}, validation=BOTH_ACCEPTED)],
        4,
        ExitCode.UNREACHABLE,
    ),
    "unreachable during validation is unreachable, not refused": (
        [unreachable("web1", play=VALIDATION_PLAY), stats(dark={"web1": 1})],
        4,
        ExitCode.UNREACHABLE,
    ),
    "unreachable during validation, with a refusal record": (
        [
            unreachable("web1", play=VALIDATION_PLAY),
            stats(dark={"web1": 1}, validation={"web1": rejected()}),
        ],
        4,
        ExitCode.UNREACHABLE,
    ),
    "unreachable by event only, before the recap": (
        [unreachable("web1", play=VALIDATION_PLAY)],
        4,
        ExitCode.FAILED,
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
    "a message saying 'rolled back' without the record is a failure": (
        [failed(msg=ROLLED), stats(failures={"web1": 1})],
        2,
        ExitCode.FAILED,
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
            stats(
                failures={"web1": 1, "web2": 1},
                releases={"web1": record(SHA_A, SHA_A, "failed", True, "unhealthy")},
            ),
        ],
        2,
        ExitCode.FAILED,
    ),
    "interrupted before the recap": ([ok()], 1, ExitCode.FAILED),
    "ansible error, no events": ([], 4, ExitCode.FAILED),
    "non-zero rc and a clean recap": ([ok(), stats()], 2, ExitCode.FAILED),
    "refused wins over everything": (
        [refused(), unreachable("web2"), stats(dark={"web2": 1}, validation={"web1": rejected()})],
        2,
        ExitCode.REFUSED,
    ),
}


@pytest.mark.parametrize(("events", "rc", "code"), CASES.values(), ids=CASES.keys())
def test_classify(events: list[dict[str, Any]], rc: int, code: ExitCode) -> None:
    assert classify(simple(*events), rc) is code


def test_ignored_failure_in_validation_is_not_a_refusal() -> None:
    events = simple(spec_refused(ignore_errors=True), stats(failures={"web1": 1}))
    assert refusal(events, "web1") is None
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


NOT_RUN = ("not run", "")
WITHOUT_RECORD: dict[str, tuple[list[dict[str, Any]], int, tuple[str, str]]] = {
    "unreachable": (
        [unreachable(msg="Host key verification failed."), stats(dark={"web1": 1})],
        4,
        ("unreachable", "Host key verification failed."),
    ),
    "unreachable during validation": (
        [unreachable(msg="Connection refused", play=VALIDATION_PLAY), stats(dark={"web1": 1})],
        4,
        ("unreachable", "Connection refused"),
    ),
    "unreachable, the recap only": ([ok(), stats(dark={"web1": 1})], 4, ("unreachable", "")),
    "unreachable, the event only": (
        [unreachable(msg="timed out")],
        4,
        ("unreachable", "timed out"),
    ),
    "unreachable wins over a refusal record": (
        [
            unreachable(msg="Connection refused", play=VALIDATION_PLAY),
            stats(dark={"web1": 1}, validation={"web1": rejected()}),
        ],
        4,
        ("unreachable", "Connection refused"),
    ),
    "refused by the input check": (
        [
            refused(msg="Refused before any host was touched: sha 'abc' is invalid"),
            stats(failures={"web1": 1}, validation={"web1": rejected("sha 'abc' is invalid")}),
        ],
        2,
        ("refused", "Refused before any host was touched: sha 'abc' is invalid"),
    ),
    "refused, the recap and the record only": (
        [
            ok(),
            stats(
                failures={"web1": 1},
                validation={"web1": rejected("sha 'abc' is invalid", "app_port 70000 is invalid")},
            ),
        ],
        2,
        ("refused", "sha 'abc' is invalid; app_port 70000 is invalid"),
    ),
    "refused, neither a message nor reasons": (
        [ok(), stats(failures={"web1": 1}, validation={"web1": {"accepted": False}})],
        2,
        ("refused", "bad input"),
    ),
    "refused without errors listed": (
        [
            refused(msg="Refused: sha"),
            stats(failures={"web1": 1}, validation={"web1": {"accepted": False}}),
        ],
        2,
        ("refused", "Refused: sha"),
    ),
    "refused by the argument spec": (
        [spec_refused(), stats(failures={"web1": 1})],
        2,
        ("refused", "Validation of arguments failed:\nmissing required arguments: app_image"),
    ),
    "accepted while another host was refused": (
        [ok(play=VALIDATION_PLAY), stats(validation={"web1": ACCEPTED, "web2": rejected()})],
        2,
        NOT_RUN,
    ),
    "failed": ([failed(msg="lock held"), stats(failures={"web1": 1})], 2, ("failed", "lock held")),
    "failed, the recap only": ([ok(), stats(failures={"web1": 1})], 2, ("failed", "")),
    "censored failure": (
        [
            raw("runner_on_failed", res={"censored": "hidden", "msg": "s3cret"}),
            stats(failures={"web1": 1}),
        ],
        2,
        ("failed", CENSORED_NOTE),
    ),
    "succeeded": ([ok(), stats()], 0, ("succeeded", "")),
    "stopped before its turn": ([ok(), stats(validation={"web1": ACCEPTED})], 2, NOT_RUN),
    "interrupted": ([ok()], 1, ("interrupted", "")),
    "interrupted before its first task": ([ok("web2")], 1, NOT_RUN),
}


@pytest.mark.parametrize(
    ("events", "rc", "want"), WITHOUT_RECORD.values(), ids=WITHOUT_RECORD.keys()
)
def test_report_without_set_stats(
    events: list[dict[str, Any]], rc: int, want: tuple[str, str]
) -> None:
    report = host_report(simple(*events), "web1", rc)
    assert (report.result, report.message) == want
    assert (report.before, report.after, report.health, report.rolled_back) == (
        None,
        None,
        "unknown",
        False,
    )


def test_report_does_not_read_rolled_back_from_the_message() -> None:
    report = host_report(simple(failed(msg=ROLLED), stats(failures={"web1": 1})), "web1", 2)
    assert (report.result, report.rolled_back) == ("failed", False)


def test_censored_failure_after_the_roles_reported_shows_no_message() -> None:
    events = simple(
        raw("runner_on_failed", res={"censored": "hidden", "msg": "s3cret"}),
        stats(failures={"web1": 1}, releases={"web1": record(SHA_A, SHA_B)}),
    )
    report = host_report(events, "web1", 2)
    assert (report.result, report.message) == ("failed", CENSORED_NOTE)


def test_hosts_in_order_including_recap_only_hosts() -> None:
    events = simple(ok("b"), ok("a"), ok("b"), stats(dark={"c": 1}, ok_hosts=("a", "b")))
    assert hosts_in(events) == ["b", "a", "c"]
    assert [r.host for r in host_reports(events)] == ["b", "a", "c"]


@pytest.mark.parametrize(
    "custom",
    [
        {},
        {"melk_release": "nope", "melk_validation": "nope"},
        {"melk_release": {"web1": "nope"}, "melk_validation": {"web1": "nope"}},
    ],
)
def test_records_ignore_malformed_stats(custom: dict[str, Any]) -> None:
    event = simplify(stats())
    assert event.stats is not None
    odd = type(event.stats)(custom=custom)
    assert release_data(odd) == {}
    assert validation_data(odd) == {}
    assert release_data(None) == {} and validation_data(None) == {}


def test_duration_unknown_without_timestamps() -> None:
    event = ok()
    event["created"] = None
    assert host_report(simple(event), "web1").seconds is None
