"""Automatic and manual rollback over real SSH, under load (issue 4's acceptance).

Runs after test_deploy.py on the same server (v3 serving), then on a fleet of
three servers for the serial-rollout case.
"""

from __future__ import annotations

import json

import pytest

from testbed import registry
from testbed.bed import GROUP_VARS, Bed
from testbed.load import first_answer, recovery_seconds, sent_after

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


def test_release_that_degrades_after_the_switch_is_rolled_back(bed: Bed) -> None:
    ensure_serving(bed, "v3")
    run, report = bed.under_load(
        "deploy.yml", "-e", f"sha={bed.releases['degrade']}", "-e", "app_verify_seconds=20"
    )
    assert run.rc != 0
    assert "Rolled back automatically" in run.output
    assert "public endpoint" in run.output, "it should fail during verification, after the switch"
    # What the load saw, on its own clock. The degrading release took traffic,
    # then failed requests, and only after it had answered: nothing failed on
    # the way to the switch.
    switched = first_answer(report.outcomes, "v5-degrade", 0.0)
    assert switched is not None, "the degrading release should have taken traffic"
    assert report.failed, "the degrading release should have failed requests under load"
    assert all(o.end > switched for o in report.failed), "a request failed before the switch"
    # Once the playbook had ended (the rollback done) every request sent was
    # answered by v3, and v3 answered again after the last failure.
    ended = report.clock(run.started + run.seconds)
    after = sent_after(report.outcomes, ended)
    assert after, "the load ran on after the playbook ended"
    wrong = [o for o in after if not (o.ok and o.version == "v3")]
    assert wrong == [], f"{len(wrong)} of {len(after)} requests after the rollback: {wrong[:3]}"
    recovery = recovery_seconds(report.outcomes, "v3")
    assert recovery is not None, "v3 never answered a request sent after the last failure"
    print(f"{len(report.failed)} failed; recovery {recovery:.1f} s (first failure to v3 again)")
    assert bed.served_version() == "v3"
    state = bed.state()
    assert state["current"]["sha"] == bed.releases["v3"]
    assert state["history"][0]["status"] == "failed"


def test_release_that_exits_after_start_never_gets_traffic(bed: Bed) -> None:
    ensure_serving(bed, "v3")
    run, report = bed.under_load("deploy.yml", "-e", f"sha={bed.releases['crash']}")
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
        run, report = bed.under_load("rollback.yml", "-e", f"sha={v1[:8]}")
        assert run.rc == 0, run.output[-4000:]
        assert report.failed == [], report.summary()
        assert bed.served_version() == "v1"
        assert bed.state()["history"][0]["kind"] == "rollback"

        run, report = bed.under_load("rollback.yml")
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
    poisoned = fleet.inventory.with_name(f"{fleet.inventory.stem}-poisoned.json")
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
