"""The pure figures of make bench, from lists of load outcomes."""

from __future__ import annotations

import pytest

from testbed.bench import (
    buckets,
    first_answer,
    ratio,
    recovery_seconds,
    slowest_tasks,
    unavailable_seconds,
)
from testbed.load import Outcome


def ok(start: float, end: float, version: str) -> Outcome:
    return Outcome(start, end, "/version", 200, version, "")


def failed(start: float, end: float, status: int = 0) -> Outcome:
    return Outcome(start, end, "/version", status, "", "" if status else "ConnectionResetError")


def test_first_answer_is_relative_to_the_command_start() -> None:
    outcomes = [ok(1.0, 1.1, "v1"), ok(5.0, 5.2, "v2"), ok(4.9, 6.0, "v2"), failed(6, 6.1)]
    assert first_answer(outcomes, "v2", since=2.0) == pytest.approx(3.2)
    assert first_answer(outcomes, "v3", since=2.0) is None


def test_recovery_runs_from_the_first_failure_to_the_old_version_after_the_last() -> None:
    outcomes = [
        ok(0.0, 0.1, "v2"),
        ok(1.0, 1.1, "broken"),
        failed(2.0, 2.1, 500),
        failed(2.5, 3.0, 500),
        ok(2.9, 3.2, "v2"),  # sent before the last failure ended: not yet recovered
        ok(3.1, 3.4, "v2"),
    ]
    assert recovery_seconds(outcomes, "v2") == pytest.approx(3.4 - 2.1)
    assert recovery_seconds([ok(0, 1, "v2")], "v2") is None
    assert recovery_seconds([failed(0, 1)], "v2") is None


def test_unavailable_sums_each_outage_until_a_later_request_is_answered() -> None:
    outcomes = [
        ok(0.0, 0.1, "v1"),
        ok(0.5, 2.5, "v1"),  # in flight through the outage: does not end it
        failed(1.0, 1.01),
        failed(1.02, 1.03),
        ok(2.0, 2.2, "v2"),  # first outage: 1.0 -> 2.2
        failed(3.0, 3.1),
        ok(3.2, 3.3, "v2"),  # second outage: 3.0 -> 3.3
    ]
    assert unavailable_seconds(outcomes) == pytest.approx(1.2 + 0.3)
    assert unavailable_seconds([ok(0, 1, "v1")]) == 0.0
    assert unavailable_seconds([ok(0, 1, "v1"), failed(1, 2)]) == pytest.approx(1.0)


def test_buckets_count_answers_by_version_and_failures_including_empty_ones() -> None:
    outcomes = [ok(0.0, 0.2, "v1"), ok(0.1, 0.4, "v1"), failed(1.0, 1.1), ok(1.3, 1.45, "v2")]
    result = buckets(outcomes, origin=0.0, width=0.5)
    assert [b.start for b in result] == [0.0, 0.5, 1.0]
    assert result[0].versions == {"v1": 2} and result[0].rps(2) == 4.0
    assert result[1].versions == {} and result[1].failed == 0
    assert result[2].versions == {"v2": 1} and result[2].failed == 1
    assert buckets([], origin=0.0) == []


def test_ratio_and_the_profile_tasks_summary() -> None:
    assert ratio(3.0, 6.0) == 0.5
    assert ratio(0, 0) is None and ratio(None, 1.0) is None
    output = (
        "PLAY RECAP ****\nhost : ok=3\n\n"
        "Friday 27 November 2026  08:00:00 +0000 (0:00:01.000)       0:00:09.000 ****\n"
        "=====\n"
        "app_deploy : Pull the image ----------------------------------- 2.50s\n"
        "docker_host : Install the packages (apt cache refreshed) -- 92.40s\n"
        "healthcheck : Health watch: probe ------------------------------ 5.10s\n"
    )
    assert slowest_tasks(output) == [
        ("docker_host : Install the packages (apt cache refreshed)", 92.4),
        ("healthcheck : Health watch: probe", 5.1),
        ("app_deploy : Pull the image", 2.5),
    ]
