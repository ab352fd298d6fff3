"""Automatic and manual rollback over real SSH, under load (issue 4's acceptance).

Runs after test_deploy.py on the same server (v3 serving), then on a fleet of
three servers for the serial-rollout case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import E2E_DIR, GROUP_VARS, Bed, start_bed, stop_bed
from test_deploy import under_load

from testbed import registry
from testbed.load import Report

pytestmark = pytest.mark.e2e


def ensure_serving(bed: Bed, name: str) -> None:
    """Deploy `name` unless it serves already (this file may run on its own)."""
    try:
        serving = bed.served_version()
    except OSError:  # no release yet: the proxy answers 502
        serving = ""
    if serving != name:
        if name == "v3" and not serving:
            # give it a previous release, as after test_deploy.py
            run = bed.playbook("deploy.yml", "-e", f"sha={bed.releases['v1']}")
            assert run.rc == 0, run.output[-4000:]
        run = bed.playbook("deploy.yml", "-e", f"sha={bed.releases[name]}")
        assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == name


def recovery_seconds(report: Report, good: str) -> float | None:
    """From the first failed request to the first answer of the good release
    after the last failure; None when nothing failed."""
    failed = report.failed
    if not failed:
        return None
    first, last = failed[0], max(failed, key=lambda o: o.end)
    after = [o for o in report.outcomes if o.ok and o.version == good and o.start >= last.start]
    assert after, "the good release never answered again"
    return min(o.end for o in after) - first.end


def test_release_that_degrades_after_the_switch_is_rolled_back(bed: Bed) -> None:
    ensure_serving(bed, "v3")
    run, report = under_load(
        bed, "deploy.yml", "-e", f"sha={bed.releases['degrade']}", "-e", "app_verify_seconds=20"
    )
    assert run.rc != 0
    assert "Rolled back automatically" in run.output
    assert "public endpoint" in run.output, "it should fail during verification, after the switch"
    assert report.versions["v5-degrade"] > 0, "the degrading release should have taken traffic"
    assert bed.served_version() == "v3"
    state = bed.state()
    assert state["current"]["sha"] == bed.releases["v3"]
    assert state["history"][0]["status"] == "failed"
    recovery = recovery_seconds(report, "v3")
    print(f"recovery from first failed request to v3 serving again: {recovery} s")
    # after the rollback, nothing fails any more
    tail = [
        o
        for o in report.outcomes
        if o.start > (max(o.end for o in report.failed) if report.failed else 0)
    ]
    assert all(o.ok for o in tail)


def test_release_that_exits_after_start_never_gets_traffic(bed: Bed) -> None:
    ensure_serving(bed, "v3")
    run, report = under_load(bed, "deploy.yml", "-e", f"sha={bed.releases['crash']}")
    assert run.rc != 0
    assert "health check failed" in run.output
    assert report.failed == [], report.summary()
    assert set(report.versions) == {"v3"}
    assert bed.served_version() == "v3"
    names = bed.sh("docker ps -a --format '{{.Names}}'").split()
    assert len(names) == 1, names


def test_manual_rollback_by_prefix_and_to_previous_with_registry_down(bed: Bed) -> None:
    ensure_serving(bed, "v3")
    v1 = bed.releases["v1"]
    registry.stop()
    try:
        run, report = under_load(bed, "rollback.yml", "-e", f"sha={v1[:8]}")
        assert run.rc == 0, run.output[-4000:]
        assert report.failed == [], report.summary()
        assert bed.served_version() == "v1"
        assert bed.state()["history"][0]["kind"] == "rollback"

        run, report = under_load(bed, "rollback.yml")
        assert run.rc == 0, run.output[-4000:]
        assert report.failed == [], report.summary()
        assert bed.served_version() == "v3", "without sha: the release before the current one"

        before = bed.state()
        run = bed.playbook("rollback.yml", "-e", "sha=deadbeef")
        assert run.rc != 0
        assert "matches no retained release" in run.output
        assert bed.releases["v1"] in run.output, "the refusal lists the retained releases"
        assert bed.state() == before
    finally:
        registry.start()


@pytest.fixture(scope="module")
def fleet(releases: dict[str, str]) -> Iterator[Bed]:
    bed = start_bed(["melk-e2e-f1", "melk-e2e-f2", "melk-e2e-f3"], releases, "fleet")
    yield bed
    stop_bed(bed)


def test_failure_on_the_third_host_rolls_the_whole_fleet_back(fleet: Bed) -> None:
    run = fleet.playbook("deploy.yml", "-e", f"sha={fleet.releases['v1']}", "-e", "deploy_serial=1")
    assert run.rc == 0, run.output[-4000:]
    # The same inventory, but v2 is unhealthy on the third host only (its app_env
    # overrides the app's mode there).
    inventory = json.loads(fleet.inventory.read_text())
    third = fleet.servers[2].name
    inventory["all"]["hosts"][third]["app_env"] = {
        **GROUP_VARS["app_env"],  # type: ignore[dict-item]
        "APP_MODE": "unhealthy",
    }
    poisoned = E2E_DIR / "fleet-poisoned.json"
    poisoned.write_text(json.dumps(inventory))
    run = fleet.playbook(
        "deploy.yml",
        "-e",
        f"sha={fleet.releases['v2']}",
        "-e",
        "deploy_serial=1",
        "-e",
        "app_deploy_health_deadline=5",
        inventory=poisoned,
    )
    assert run.rc != 0
    assert "health check failed" in run.output
    for server in fleet.servers:
        assert fleet.served_version(server) == "v1", server.name
        assert fleet.state(server.name)["current"]["sha"] == fleet.releases["v1"]
    for server in fleet.servers[:2]:
        kinds = [(e["kind"], e["status"]) for e in fleet.state(server.name)["history"][:2]]
        assert kinds == [("rollback", "succeeded"), ("deploy", "succeeded")], server.name
