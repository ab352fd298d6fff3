"""The pure figures of make bench, from lists of load outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import cpu
from testbed.bench.config import FLEET_RELEASES, FLEET_ROUNDS, FLEET_SIZES, fleet_plan
from testbed.bench.measure import (
    CPU_PARTS,
    FleetDeploy,
    Latency,
    LongRequest,
    Measure,
    Results,
    before_switch_latency,
    buckets,
    cpu_split,
    latency_of,
    measure_wrk,
    overhead,
    p99_ratio,
    percentile,
    rate,
    ratio,
    split_latency,
)
from testbed.bench.report import all_met, cpu_lines, fleet_table, goals, to_json
from testbed.load import Outcome, first_answer, recovery_seconds, unavailable_seconds
from testbed.playbook import Run, slowest_tasks
from testbed.wrk import Sample, parse


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


def fast(start: float, ms: float, status: int = 200, path: str = "/version") -> Outcome:
    return Outcome(start, start + ms / 1000, path, status, "v1" if status else "", "")


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([float(n) for n in range(1, 101)], 50, 50.0),
        ([float(n) for n in range(1, 101)], 99, 99.0),
        ([float(n) for n in range(1, 101)], 100, 100.0),
        ([float(n) for n in range(1, 201)], 99, 198.0),
        ([30.0, 10.0, 20.0], 50, 20.0),
        ([30.0, 10.0, 20.0], 99, 30.0),
        ([7.0], 99, 7.0),
        ([5.0, 1.0], 50, 1.0),
    ],
)
def test_percentile_is_the_nearest_rank(values: list[float], pct: float, expected: float) -> None:
    assert percentile(values, pct) == expected


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_latency_counts_answered_fast_requests_only() -> None:
    outcomes = [
        fast(0.0, 10),
        fast(0.1, 30),
        fast(0.2, 20),
        fast(0.3, 500, path="/slow?ms=400"),  # sleeps on purpose
        fast(0.4, 9000, status=0),  # no answer: no latency
        fast(0.5, 40, status=502),  # an answer, as wrk counts it
    ]
    assert latency_of(outcomes) == Latency(4, 20.0, 40.0, 40.0)
    assert latency_of([fast(0.0, 5, status=0)]) is None


def test_latency_before_is_the_lead_and_during_is_the_window_around_the_switch() -> None:
    lead = [fast(0.1 * i, 10 + i) for i in range(10)]  # sent 0.0 .. 0.9, 10 .. 19 ms
    command = [fast(3.0 + 0.1 * i, 100 + i) for i in range(60)]  # sent 3.0 .. 8.9
    command.append(fast(1.0, 500))  # sent as the command started: not before it
    before, during = split_latency(lead + command, start=1.0, switch=5.0, window=1.0)
    assert before == Latency(10, 14.0, 19.0, 19.0)
    # sent in [4.0, 6.0): i = 10 .. 29, 110 .. 129 ms (4.0 in, 6.0 out)
    assert during == Latency(20, 119.0, 129.0, 129.0)
    # no switch seen: during is everything sent from the command's start on
    _, whole = split_latency(lead + command, start=1.0, switch=None)
    assert whole == Latency(61, 130.0, 500.0, 500.0)
    # the playbook's own time before the switch: sent in [1.0, 4.0), i = 0 .. 9 and the 500 ms
    earlier = before_switch_latency(lead + command, start=1.0, switch=5.0, window=1.0)
    assert earlier == Latency(11, 105.0, 500.0, 500.0)
    assert before_switch_latency(lead + command, start=1.0, switch=None) is None


def test_overhead_is_the_wall_time_less_the_watch() -> None:
    assert overhead(8.5, 5) == pytest.approx(3.5)
    assert overhead(3.0, None) is None
    assert run("deploy_wrk", 11.2, verify=5).overhead == pytest.approx(6.2)


def test_p99_ratio_and_rate() -> None:
    assert p99_ratio(Latency(9, 1, 20, 30), Latency(9, 1, 50, 60)) == 2.5
    assert p99_ratio(None, Latency(9, 1, 50, 60)) is None
    assert p99_ratio(Latency(9, 1, 0, 0), Latency(9, 1, 50, 60)) is None
    # 4 requests from 1.0 (first sent) to 3.0 (last answered)
    assert rate([fast(1.0, 100), fast(1.5, 100), fast(2.0, 100), fast(2.9, 100)]) == 2.0
    assert rate([]) == 0.0


WRK_TEXT = """Running 10s test @ http://127.0.0.1:8080/version
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    48.20ms   20.10ms   1.20s    90.00%
  Latency Distribution
     50%   45.00ms
     75%   50.00ms
     90%   60.00ms
     99%  120.00ms
  12000 requests in 10.00s, 2.00MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 7
non-2xx bench-v4-degrade-wrk 5
non-2xx none 2
Requests/sec:   1200.00
"""
ORIGIN = 1_800_000_000.0  # when wrk started, unix seconds


def answer(sent: float, ms: float, release: str = "v1", status: int = 200) -> Sample:
    """One answer wrk timed, `sent` seconds after it started."""
    return Sample(ORIGIN + sent, ms, status, release)


def timed_at(seconds: float, started: float) -> Run:
    """A command of `seconds` that started `started` seconds after wrk did."""
    return Run(["deploy"], 0, "", seconds, Path("x.log"), 0.0, ORIGIN + started)


def test_a_run_under_wrk_counts_socket_errors_and_non_2xx_from_its_report() -> None:
    found = measure_wrk(
        "degrade_wrk", "degrade", timed_at(12.0, 6.0), parse(WRK_TEXT), [], ORIGIN, "v2", verify=15
    )
    assert found.failed == 3 + 1 + 2 + 7
    assert found.total == 12000 + 6
    assert found.rps == 1200.0
    assert found.overhead == pytest.approx(-3.0)
    assert found.before is None and found.during is None and found.p99_ratio is None
    assert found.wrk is not None and found.wrk["non_2xx_by_release"] == {
        "bench-v4-degrade-wrk": 5,
        "none": 2,
    }
    assert (found.wrk["p50_ms"], found.wrk["p99_ms"], found.wrk["max_ms"]) == (45.0, 120.0, 1200.0)


def test_wrk_latency_comes_from_its_timed_answers_around_the_switch() -> None:
    # wrk starts at 0; the command at 6 s (started_wall), the switch file 3 s into it (9 s)
    warmup = [answer(0.2 + i / 10, 900.0) for i in range(5)]  # connections opening: left out
    lead = [answer(1.0 + i / 10, 10.0 + i % 10) for i in range(50)]  # 1.0 .. 5.9 s
    playbook = [answer(6.0 + i / 10, 30.0) for i in range(20)]  # 6.0 .. 7.9 s
    window = [answer(8.0 + i / 10, 40.0 + i, "v1" if i < 10 else "v2") for i in range(20)]
    after = [answer(10.0 + i / 10, 12.0, "v2") for i in range(10)]
    samples = warmup + lead + playbook + window + after
    found = measure_wrk(
        "rollback_wrk",
        "rollback",
        timed_at(6.0, 6.0),
        parse(WRK_TEXT),
        samples,
        ORIGIN,
        "v2",
        upstream=ORIGIN + 9.0,
        verify=5,
    )
    assert found.switch_server == pytest.approx(3.0)
    # the first answer by v2: sent at 9.0 s, 50 ms, since the command started at 6 s
    assert found.switch == pytest.approx(3.05)
    assert found.before == Latency(50, 14.0, 19.0, 19.0)
    # within 1 s either side of the switch at 9 s: sent in [8.0, 10.0)
    assert found.during == Latency(20, 49.0, 59.0, 59.0)
    assert found.p99_ratio == pytest.approx(59.0 / 19.0)
    # the playbook before that window: sent in [6.0, 8.0)
    assert found.before_switch == Latency(20, 30.0, 30.0, 30.0)
    assert found.versions == {"v1": 80, "v2": 20}
    assert len(found.latency) == 100 and found.latency[0] == (-5.0, 10.0)
    assert found.command_window == pytest.approx((5.999999, 11.999999), abs=1e-5)
    # no switch file and no new release seen: during is the whole command
    command = timed_at(6.0, 6.0)
    naive = measure_wrk("n", "n", command, parse(WRK_TEXT), lead + playbook, ORIGIN, "v9")
    assert naive.switch is None and naive.during == Latency(20, 30.0, 30.0, 30.0)


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        ([True, True], True),
        ([True, False], False),
        ([None, False], False),
        ([True, None], None),
        ([], None),
    ],
)
def test_a_goal_over_several_runs(checks: list[bool | None], expected: bool | None) -> None:
    assert all_met(checks) is expected


def test_the_long_request_must_be_in_flight_at_the_switch() -> None:
    long = LongRequest("/slow?ms=20000", -1.0, 20.1, 200, "bench-v1")
    assert long.spans(5.0) and long.spans(19.0)
    assert not long.spans(19.1) and not long.spans(-1.0) and not long.spans(None)
    assert long.text(5.0) == (
        "HTTP 200 from bench-v1 after 20.1 s (sent at -1.0 s, in flight across the switch at 5.0 s)"
    )
    cut = LongRequest("/slow?ms=20000", -1.0, 12.0, 0, "", "RemoteDisconnected")
    assert cut.text(5.0).startswith("no answer (RemoteDisconnected) after 12.0 s")


def run(
    name: str,
    wall: float,
    failed: int = 0,
    recovery: float | None = None,
    verify: float | None = None,
    before: float = 10.0,
    during: float = 15.0,
    rc: int = 0,
) -> Measure:
    return Measure(
        name=name,
        label=name,
        rc=rc,
        wall=wall,
        switch=1.0,
        switch_server=2.0,
        recovery=recovery,
        failed=failed,
        total=100,
        unavailable=0.0,
        versions={},
        command_window=(0.0, wall),
        verify=verify,
        before=Latency(50, 5.0, before, before),
        during=Latency(50, 5.0, during, during),
    )


def timed(seconds: float, rc: int = 0) -> Run:
    return Run(["deploy"], rc, "", seconds, Path("x.log"), 0.0, 0.0)


def fleet(
    runs: dict[int, list[Run]], cpu: dict[int, dict[str, float]] | None = None
) -> dict[int, list[FleetDeploy]]:
    """The fleet's deploys by size, each size's with the same CPU split (or none)."""
    return {n: [FleetDeploy(r, (cpu or {}).get(n, {})) for r in rs] for n, rs in runs.items()}


def all_runs() -> dict[str, Measure]:
    """Every run of the bench, each goal met (on its edge where it has one)."""
    found = {
        "deploy_wrk": run("deploy_wrk", 11.0, verify=5),  # overhead 6.0
        "deploy_conn": run("deploy_conn", 10.5, verify=5),
        "rollback_wrk": run("rollback_wrk", 8.0, verify=5, during=20.0),  # 3.0, p99 2x
        "rollback_conn": run("rollback_conn", 7.5, verify=5),
        "degrade_wrk": run("degrade_wrk", 9.0, failed=30, verify=15),
        "degrade_conn": run("degrade_conn", 9.0, failed=60, recovery=5.0, verify=15),
        "naive_wrk": run("naive_wrk", 2.0, failed=900),
        "naive_conn": run("naive_conn", 2.0, failed=80),
        "deploy_cold": run("deploy_cold", 13.0, verify=5),
        "naive_cold": run("naive_cold", 2.0, failed=70),
    }
    found["deploy_cold"].long = LongRequest("/slow?ms=20000", -1.0, 20.0, 200, "bench-v1")
    return found


def verdicts(results: Results) -> dict[str, tuple[str, bool | None]]:
    return {" ".join(g.text.split()[:2]): (g.figure, g.met) for g in goals(results)}


def test_goals_met_at_their_limits_with_their_figures() -> None:
    results = Results("now")
    results.measures = all_runs()
    results.fleet = fleet({1: [timed(10.0)], 3: [timed(11.0)], 5: [timed(13.0)]})
    assert [(g.text.split()[0], g.figure, g.met) for g in goals(results)] == [
        ("rollback", "wrk 3.0 s, conn 2.5 s", True),
        ("deploy", "wrk 6.0 s, conn 5.5 s", True),
        ("0", "ours wrk 0 of 200, conn 0 of 300; naive wrk 900 of 100, conn 150 of 200", True),
        (
            "the",
            "deploy_cold: HTTP 200 from bench-v1 after 20.0 s "
            "(sent at -1.0 s, in flight across the switch at 2.0 s)",
            True,
        ),
        ("p99", "deploy 15 vs 10 ms = 1.50x, rollback 20 vs 10 ms = 2.00x", True),
        ("p99", "deploy 15 vs 10 ms = 1.50x, rollback 15 vs 10 ms = 1.50x", True),
        ("recovery", "5.0 s", True),
        ("5", "13.0 s vs 10.0 s = 1.30x (medians of 1 and 1 deploys)", True),
    ]


@pytest.mark.parametrize(
    ("name", "change", "goal", "figure"),
    [
        ("rollback_conn", {"wall": 8.1}, "rollback overhead", "wrk 3.0 s, conn 3.1 s"),
        ("deploy_wrk", {"wall": 11.1}, "deploy overhead", "wrk 6.1 s, conn 5.5 s"),
        ("deploy_wrk", {"rc": 2}, "deploy overhead", "wrk 6.0 s (exit 2), conn 5.5 s"),
        ("deploy_conn", {"failed": 1}, "0 failed", None),
        ("rollback_wrk", {"failed": 1}, "0 failed", None),
        ("deploy_cold", {"failed": 1}, "0 failed", None),
        ("degrade_conn", {"recovery": 5.1}, "recovery from", "5.1 s"),
    ],
)
def test_each_goal_fails_past_its_limit(
    name: str, change: dict[str, float], goal: str, figure: str | None
) -> None:
    results = Results("now")
    results.measures = all_runs()
    for key, value in change.items():
        setattr(results.measures[name], key, value)
    found = verdicts(results)[goal]
    assert found[1] is False
    if figure is not None:
        assert found[0] == figure


def test_p99_goal_per_load_shape() -> None:
    results = Results("now")
    results.measures = all_runs()
    results.measures["rollback_wrk"].during = Latency(50, 5.0, 20.1, 30.0)
    results.measures["deploy_conn"].before = None
    results.measures["rollback_conn"].before_switch = Latency(40, 5.0, 31.0, 40.0)
    p99 = [g for g in goals(results) if g.text.startswith("p99")]
    assert [g.met for g in p99] == [False, None]
    assert "(wrk:" in p99[0].text and "(new connections:" in p99[1].text
    assert p99[1].figure == (
        "deploy n/a, rollback 15 vs 10 ms = 1.50x (playbook before the switch: 31 ms)"
    )


def test_failed_requests_count_degrading_release_out_and_naive_in() -> None:
    results = Results("now")
    results.measures = all_runs()
    figure, met = verdicts(results)["0 failed"]
    assert met is True and "naive wrk 900 of 100, conn 150 of 200" in figure
    del results.measures["deploy_wrk"], results.measures["rollback_wrk"]
    assert verdicts(results)["0 failed"][1] is None


def test_the_long_request_goal() -> None:
    results = Results("now")
    results.measures = all_runs()
    cold = results.measures["deploy_cold"]
    cold.long = LongRequest("/slow?ms=20000", -1.0, 9.0, 0, "", "RemoteDisconnected")
    assert verdicts(results)["the 20"][1] is False
    # answered, but it ended before the switch: it proved nothing
    cold.long = LongRequest("/slow?ms=20000", -1.0, 2.5, 200, "bench-v1")
    assert verdicts(results)["the 20"][1] is None
    cold.long = None
    assert verdicts(results)["the 20"] == ("n/a", None)


def test_fleet_goal_past_the_ratio_and_without_a_figure() -> None:
    results = Results("now")
    results.measures = all_runs()
    results.fleet = fleet({1: [timed(10.0)], 5: [timed(13.1)]})
    assert verdicts(results)["5 hosts"] == (
        "13.1 s vs 10.0 s = 1.31x (medians of 1 and 1 deploys)",
        False,
    )
    results.fleet[5].append(FleetDeploy(timed(16.0, rc=2)))
    assert verdicts(results)["5 hosts"][1] is None


def test_the_fleet_goal_is_a_ratio_of_medians() -> None:
    """One slow one-host deploy (or one fast five-host one) does not decide the verdict."""
    results = Results("now")
    results.measures = all_runs()
    results.fleet = fleet(
        {
            1: [timed(10.0), timed(13.0), timed(10.4)],  # median 10.4, mean 11.1
            5: [timed(13.6), timed(11.0), timed(13.4)],  # median 13.4
        }
    )
    assert verdicts(results)["5 hosts"] == (
        "13.4 s vs 10.4 s = 1.29x (medians of 3 and 3 deploys)",
        True,
    )
    results.fleet[5][1] = FleetDeploy(timed(14.0))  # median 13.6: 1.31x
    assert verdicts(results)["5 hosts"][1] is False


def test_the_fleet_plan_takes_the_sizes_in_turns_and_never_redeploys_what_serves() -> None:
    plan = fleet_plan()
    assert [n for n, _ in plan] == list(FLEET_SIZES) * FLEET_ROUNDS
    serving: dict[int, str] = {}
    for size, release in plan:
        for host in range(1, size + 1):  # a fleet of n is hosts 1..n
            assert serving.get(host) != release, (size, release, serving)
            serving[host] = release
    assert {release for _, release in plan} == set(FLEET_RELEASES)


@pytest.mark.parametrize("releases", [("a", "b"), ("a", "b", "c")])
def test_too_few_releases_would_redeploy_what_serves(releases: tuple[str, ...]) -> None:
    """Why four: with two or three, some host gets the release it serves (a no-op run)."""
    serving: dict[int, str] = {}
    repeats = 0
    for size, release in fleet_plan(releases=releases):
        for host in range(1, size + 1):
            repeats += serving.get(host) == release
            serving[host] = release
    assert repeats > 0


# Where the CPU went during a run (testbed/cpu.py's `grown`, then cpu_split).


def test_cpu_split_gives_the_playbook_its_cpu_out_of_the_machines_rest() -> None:
    used = {
        "container melk-bench-N": 3.0,  # what_container() names melk-bench-1 so
        cpu.NESTED: 1.5,
        "wrk": 2.0,
        "this machine's Docker engine": 0.5,
        cpu.SSH: 0.25,
        "the kernel's threads": 0.25,
        cpu.OTHER: 4.0,  # the ended playbook (3.5) and something else (0.5)
    }
    split = cpu_split(used, playbook=3.5, window=8.0, cores=2)
    assert split == {
        "ansible": 3.75,  # the playbook and its SSH master connection
        "server": 3.0,
        "apps": 1.5,
        "load": 2.0,
        "engine": 0.5,
        "other": 0.75,  # the kernel's threads and the rest
        "idle": 4.5,  # 16 core-s had, 11.5 used
    }
    assert [key for key, _ in CPU_PARTS] == list(split)


def test_cpu_split_of_the_new_connection_load_and_a_busy_machine() -> None:
    """The new-connection clients are the bench's own threads (other Python); a playbook
    whose CPU the machine's rest does not hold (a short reading) still counts whole, and
    idle never goes below 0."""
    used = {"other Python (testbed, helpers)": 1.0, cpu.OTHER: 0.5, "container melk-bench-N": 2}
    split = cpu_split(used, playbook=2.0, window=2.0, cores=2)
    assert split["load"] == 1.0 and split["ansible"] == 2.0
    assert split["other"] == 0.0 and split["idle"] == 0.0


def test_the_cpu_table_has_a_row_per_run_read_with_shares() -> None:
    runs = all_runs()
    runs["deploy_wrk"].cpu = cpu_split({cpu.OTHER: 2.0, "wrk": 4.0}, 2.0, 5.0, 2)
    runs["deploy_wrk"].cpu_window = 5.0
    lines = cpu_lines(runs, cores=2)
    rows = [line for line in lines if line.startswith("| deploy_wrk")]
    assert rows == [
        "| deploy_wrk | conn | 5.0 s, 10.0 core-s | 2.0 (20%) | 0.0 (0%) | 0.0 (0%) "
        "| 4.0 (40%) | 0.0 (0%) | 0.0 (0%) | 4.0 (40%) |"
    ]
    assert cpu_lines(all_runs(), cores=2) == []  # no run read: no table


def test_the_fleet_table_gives_each_size_its_deploys_median_ratio_and_cpu() -> None:
    results = Results("now")
    one = cpu_split({cpu.OTHER: 2.5, "container melk-bench-N": 1.0, cpu.NESTED: 0.2}, 2.5, 10.0, 2)
    five = cpu_split({cpu.OTHER: 6.0, "container melk-bench-N": 6.0, cpu.NESTED: 1.0}, 6.0, 13.5, 2)
    runs = {1: [timed(10.0), timed(10.4), timed(9.0)], 5: [timed(13.5), timed(14.0, rc=2)]}
    results.fleet = fleet(runs, {1: one, 5: five})
    lines = fleet_table(results, cores=2)
    assert lines[2:] == [
        # 16.3 of the 20 core-s the cores had while it was read
        "| 1 | 10.0, 10.4, 9.0 s | 10.0 s | 1.00 | 2.5 | 1.2 | 82% |",
        # the median of two is their mean: 13.75 s; idle 14 of 27 core-s
        "| 5 | 13.5, 14.0 (exit 2) s | 13.8 s | 1.38 | 6.0 | 7.0 | 52% |",
    ]
    results.fleet = fleet(runs)  # the CPU not read
    assert (
        fleet_table(results, cores=2)[2]
        == "| 1 | 10.0, 10.4, 9.0 s | 10.0 s | 1.00 | n/a | n/a | n/a |"
    )


def test_the_json_keeps_each_fleet_deploy_with_its_own_cpu() -> None:
    results = Results("now")
    results.measures = all_runs()
    one = {"ansible": 2.5, "idle": 16.0}
    results.fleet = {
        1: [FleetDeploy(timed(10.0), one), FleetDeploy(timed(9.0))],  # the second not read
        5: [FleetDeploy(timed(13.0, rc=2), {"ansible": 6.0})],
    }
    fleet = to_json(results)["fleet"]
    assert {n: [(d["seconds"], d["rc"], d["cpu"]) for d in ds] for n, ds in fleet.items()} == {
        "1": [(10.0, 0, one), (9.0, 0, {})],
        "5": [(13.0, 2, {"ansible": 6.0})],
    }
    assert to_json(results)["fleet_ratio_of_medians"] is None  # a five-host deploy failed
