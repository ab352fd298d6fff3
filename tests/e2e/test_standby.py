"""The standby (issue 17): after a deploy the release before keeps running without traffic,
so a rollback to it is a switch, not a start. Runs on its own server, in file order."""

from __future__ import annotations

import pytest

from testbed.bed import Bed

pytestmark = pytest.mark.e2e


def container_ids(bed: Bed) -> dict[str, str]:
    """The running containers of the app: sha -> container id."""
    lines = bed.sh(
        "docker ps --filter label=io.melk.app=melk-ai --format '{{.Label \"io.melk.sha\"}} {{.ID}}'"
    ).split("\n")
    return dict(line.split() for line in lines if line.strip())


def deploy(bed: Bed, name: str, *extra: str) -> None:
    run = bed.playbook("deploy.yml", "-e", f"sha={bed.releases[name]}", *extra)
    assert run.rc == 0, run.output[-4000:]


def test_after_a_deploy_the_release_before_runs_on_as_the_standby(bed: Bed) -> None:
    deploy(bed, "v1")
    deploy(bed, "v2")
    assert bed.served_version() == "v2"
    assert set(container_ids(bed)) == {bed.releases["v1"], bed.releases["v2"]}
    status = bed.playbook("status.yml")
    assert status.rc == 0, status.output[-3000:]
    assert f"standby    {bed.releases['v1']} (slot" in status.output


def test_a_rollback_to_the_standby_is_a_switch_under_load(bed: Bed) -> None:
    before = container_ids(bed)
    run, report = bed.under_load("rollback.yml")
    assert run.rc == 0, run.output[-4000:]
    assert report.failed == [], report.summary()
    assert bed.served_version() == "v1"
    after = container_ids(bed)
    # the same containers: v1 was not started again, v2 runs on as the new standby
    assert after == before
    assert bed.state()["history"][0]["kind"] == "rollback"


def test_a_standby_that_no_longer_answers_is_started_again(bed: Bed) -> None:
    # serving v1, standby v2: v2 still runs but answers nothing (paused), so the
    # probe under the lock fails and the rollback takes the full path
    before = container_ids(bed)
    bed.sh(f"docker pause {before[bed.releases['v2']]}")
    run = bed.playbook("rollback.yml")
    assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == "v2"
    after = container_ids(bed)
    assert after[bed.releases["v1"]] == before[bed.releases["v1"]]  # the new standby
    assert after[bed.releases["v2"]] != before[bed.releases["v2"]]  # started again
    # back to serving v1 with v2 as the standby, for the next test
    run = bed.playbook("rollback.yml")
    assert run.rc == 0, run.output[-4000:]
    assert container_ids(bed) == after


def test_a_rollback_to_an_older_release_starts_it(bed: Bed) -> None:
    deploy(bed, "v3")  # serving v3, standby v1; v2 is retained, not running
    run = bed.playbook("rollback.yml", "-e", f"sha={bed.releases['v2'][:8]}")
    assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == "v2"
    assert set(container_ids(bed)) == {bed.releases["v2"], bed.releases["v3"]}


def test_without_the_standby_the_release_before_is_stopped(bed: Bed) -> None:
    deploy(bed, "v1", "-e", "app_keep_standby=false")
    assert set(container_ids(bed)) == {bed.releases["v1"]}
    status = bed.playbook("status.yml")
    assert "standby    none" in status.output
