"""The pure figures of make bench, from lists of load outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.bench.measure import Measure, Results, buckets, ratio
from testbed.bench.report import goals
from testbed.load import Outcome, first_answer, recovery_seconds, unavailable_seconds
from testbed.playbook import Run, slowest_tasks


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


@pytest.mark.parametrize(
    ("in_flight", "expected"),
    [
        # sent before the outage began, answered during it (by the old
        # connection): the outage goes on until the request sent at 2.0 ends
        (ok(0.5, 1.5, "v1"), 2.2 - 1.0),
        # sent at the very moment the outage began: it counts as a later request
        (ok(1.0, 1.5, "v1"), 1.5 - 1.0),
    ],
    ids=["sent-before-the-outage", "sent-as-it-began"],
)
def test_a_request_in_flight_when_the_outage_began_does_not_end_it(
    in_flight: Outcome, expected: float
) -> None:
    outcomes = [ok(0.0, 0.1, "v1"), failed(1.0, 1.01), in_flight, ok(2.0, 2.2, "v2")]
    assert unavailable_seconds(outcomes) == pytest.approx(expected)


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


def run(name: str, wall: float, failed: int = 0, recovery: float | None = None) -> Measure:
    return Measure(
        name=name,
        label=name,
        rc=0,
        wall=wall,
        switch=1.0,
        switch_server=None,
        recovery=recovery,
        failed=failed,
        total=100,
        unavailable=0.0,
        versions={},
        command_window=(0.0, wall),
    )


def timed(seconds: float, rc: int = 0) -> Run:
    return Run(["deploy"], rc, "", seconds, Path("x.log"), 0.0, 0.0)


def test_goals_say_met_not_met_or_not_measured_with_the_figure() -> None:
    results = Results("now")
    results.measures = {
        "deploy_warm": run("deploy_warm", 14.0),
        "rollback": run("rollback", 9.0),
        "naive_warm": run("naive_warm", 3.0, failed=40),
    }
    results.fleet = {1: timed(10.0), 5: timed(14.0)}
    found = {g.text.split()[0]: g for g in goals(results)}
    assert found["deploy"].met is True and found["deploy"].figure == "14.0 s"
    assert found["rollback"].met is False
    assert found["recovery"].met is None
    assert found["0"].met is True and "naive 40 of 100" in found["0"].figure
    assert found["5"].met is True and "1.40x" in found["5"].figure
    results.fleet[5] = timed(16.0, rc=2)
    assert {g.text.split()[0]: g for g in goals(results)}["5"].met is None
