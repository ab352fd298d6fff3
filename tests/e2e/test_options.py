"""The deploy's options and side playbooks over real SSH (issue 13, item 7).

The hooks, deploy_force, rollback_keep_failed_container, a rollback to a
release whose image is gone, playbooks/status.yml, secrets at -vvv and with
--diff, and deploy_fleet_rollback=false. The tests share one server of their
own (its name is MELK_E2E_SERVER's with "-opt"), in file order; each first
puts the server in the state it needs, so one may also run on its own. The
fleet test adds a second server, started beside the first.

Assertions read the server through `docker exec`, never through the
playbooks under test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from testbed import ROOT, STATE_DIR, app, servers
from testbed.app import UPSTREAM
from testbed.bed import GROUP_VARS, SENTINEL, Bed, Run, start_bed, stop_bed

pytestmark = pytest.mark.e2e

HOOKS = ROOT / "tests" / "e2e" / "hooks"
HOOK_LOG = "/tmp/melk-e2e-hooks.log"  # nosec B108: on the test server
# A release that never gets healthy is given up on sooner here: the outcome is
# the same, only sooner.
SHORT_GATE = ("-e", "app_deploy_health_deadline=4")


# --------------------------------------------------------------------------- fixtures


def _names() -> list[str]:
    base = os.environ.get("MELK_E2E_SERVER", "melk-e2e-1")
    return [f"{base}-opt", f"{base}-opt2"]


@pytest.fixture(scope="module")
def pair(building: Future[dict[str, str]]) -> Iterator[Bed]:
    """Two provisioned servers in one inventory (for the fleet test); started and
    provisioned together while the sample releases build."""
    bed = start_bed(_names(), {}, STATE_DIR / "e2e" / "options-pair.json")
    try:
        bed.releases.update(building.result())
    except BaseException:
        stop_bed(bed)
        raise
    yield bed
    stop_bed(bed)


@pytest.fixture(scope="module")
def bed(pair: Bed) -> Bed:
    """The first server of the pair on its own: what every test but the fleet's uses."""
    path = servers.write_inventory(STATE_DIR / "e2e" / "options.json", [pair.server], GROUP_VARS)
    return dataclasses.replace(pair, inventory=path, servers=[pair.server])


# --------------------------------------------------------------------------- helpers


def deploy(bed: Bed, release: str, *extra: str, inventory: Path | None = None) -> Run:
    return bed.playbook(
        "deploy.yml", "-e", f"sha={bed.releases[release]}", *extra, inventory=inventory
    )


def containers(bed: Bed, host: str | None = None) -> list[tuple[str, str, str]]:
    """This app's containers on the host: (id, release sha, state), sorted."""
    out = bed.sh(
        "docker ps -a --no-trunc --filter label=io.melk.app=melk-ai"
        " --format '{{.ID}} {{.Label \"io.melk.sha\"}} {{.State}}'",
        host,
    )
    return sorted(tuple(line.split()) for line in out.splitlines() if line.strip())  # type: ignore[misc]


def of_release(bed: Bed, release: str) -> list[tuple[str, str, str]]:
    return [c for c in containers(bed) if c[1] == bed.releases[release]]


def previous_sha(state: dict[str, Any]) -> str | None:
    """The newest succeeded release in the history that is not the current one."""
    current = state["current"]["sha"]
    for entry in state["history"]:
        if entry["status"] == "succeeded" and entry["sha"] != current:
            return str(entry["sha"])
    return None


def arrange(bed: Bed, previous: str, current: str) -> None:
    """`current` serves and `previous` is the release before it (both images on the
    host), deploying them when not."""
    state = bed.state()
    want = (bed.releases[previous], bed.releases[current])
    tags = bed.sh(f"docker images --format '{{{{.Tag}}}}' {app.pull_repository()}").split()
    if (
        state.get("current")
        and (previous_sha(state), state["current"]["sha"]) == want
        and all(sha in tags for sha in want)
    ):
        assert bed.served_version() == current
        return
    for name in (previous, current):
        run = deploy(bed, name)
        assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == current


def serve(bed: Bed, release: str) -> None:
    """`release` serves, deployed when it does not."""
    try:
        serving = bed.served_version()
    except OSError:  # no release yet: the proxy answers 502
        serving = ""
    if serving != release:
        run = deploy(bed, release)
        assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == release


def hook_args(**hooks: str) -> list[str]:
    """-e app_deploy_hook_<point>=<file in tests/e2e/hooks> for each point given."""
    args: list[str] = []
    for point, file in hooks.items():
        args += ["-e", f"app_deploy_hook_{point}={HOOKS / file}"]
    return args


def hook_log(bed: Bed) -> list[str]:
    return bed.sh(f"cat {HOOK_LOG} 2>/dev/null || true").splitlines()


# --------------------------------------------------------------------------- hooks


def test_the_three_hooks_run_once_each_in_order_around_the_switch(bed: Bed) -> None:
    serve(bed, "v1")
    v1, v2 = bed.releases["v1"], bed.releases["v2"]
    bed.sh(f"rm -f {HOOK_LOG}")
    run = deploy(
        bed,
        "v2",
        *hook_args(
            before_start="before_start.yml",
            before_switch="before_switch.yml",
            after_success="after_success.yml",
        ),
    )
    assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == "v2"
    # Each line: the hook, how many containers of v2 ran then, what the proxy served.
    assert hook_log(bed) == [
        f"before-start 0 {v1}",  # before v2 started
        f"before-switch 1 {v1}",  # v2 up, v1 still serves
        f"after-success 1 {v2}",  # v2 serves
    ]


def test_a_failing_before_switch_hook_leaves_the_old_release_serving(bed: Bed) -> None:
    arrange(bed, "v1", "v2")
    upstream = bed.sh(f"cat {UPSTREAM}")
    bed.sh(f"rm -f {HOOK_LOG}")
    run = deploy(
        bed,
        "v3",
        *hook_args(
            before_start="before_start.yml",
            before_switch="fail.yml",
            after_success="after_success.yml",
        ),
    )
    assert run.rc != 0
    assert "the test hook refuses this release" in run.output
    assert "Rolled back automatically" in run.output
    assert bed.served_version() == "v2"
    assert bed.sh(f"cat {UPSTREAM}") == upstream
    state = bed.state()
    assert state["current"]["sha"] == bed.releases["v2"]
    assert (state["history"][0]["sha"], state["history"][0]["status"]) == (
        bed.releases["v3"],
        "failed",
    )
    # the before-start hook ran, the after-success hook did not
    assert hook_log(bed) == [f"before-start 0 {bed.releases['v2']}"]


# --------------------------------------------------------------- a failed release's container


def test_rollback_keep_failed_container_keeps_it_stopped(bed: Bed) -> None:
    arrange(bed, "v1", "v2")
    run = deploy(bed, "unhealthy", *SHORT_GATE, "-e", "rollback_keep_failed_container=true")
    assert run.rc != 0
    assert "health check failed" in run.output
    assert bed.served_version() == "v2"
    kept = of_release(bed, "unhealthy")
    assert [state for _, _, state in kept] == ["exited"], containers(bed)


def test_a_failed_release_container_is_removed_by_default(bed: Bed) -> None:
    arrange(bed, "v1", "v2")
    run = deploy(bed, "unhealthy", *SHORT_GATE)
    assert run.rc != 0
    assert "health check failed" in run.output
    assert bed.served_version() == "v2"
    assert of_release(bed, "unhealthy") == [], containers(bed)
    assert [c[1:] for c in containers(bed)] == [(bed.releases["v2"], "running")]


# --------------------------------------------------------------------------- deploy_force


def test_a_deploy_of_the_serving_release_changes_nothing(bed: Bed) -> None:
    arrange(bed, "v1", "v2")
    before, state = containers(bed), bed.state()
    run = deploy(bed, "v2")
    assert run.rc == 0, run.output[-4000:]
    assert "nothing to do" in run.output
    assert containers(bed) == before
    assert bed.state() == state


def test_deploy_force_starts_the_serving_release_again(bed: Bed) -> None:
    arrange(bed, "v1", "v2")
    (old,) = of_release(bed, "v2")
    history = bed.state()["history"]
    run = deploy(bed, "v2", "-e", "deploy_force=true")
    assert run.rc == 0, run.output[-4000:]
    assert "nothing to do" not in run.output
    assert bed.served_version() == "v2"
    (new,) = of_release(bed, "v2")
    assert new[0] != old[0], "a new container should serve"
    assert new[2] == "running"
    state = bed.state()
    assert state["current"]["sha"] == bed.releases["v2"]
    assert len(state["history"]) == len(history) + 1
    assert (state["history"][0]["kind"], state["history"][0]["status"]) == ("deploy", "succeeded")


# --------------------------------------------------------------------------- status.yml


def status_fields(output: str) -> dict[str, str]:
    """The status lines' values: current, previous, retained, health."""
    fields = {}
    for key in ("current", "previous", "retained", "health"):
        match = re.search(rf"^\W*{key} +(.+?)\s*$", output, re.MULTILINE)
        assert match, f"no {key} line in:\n{output[-3000:]}"
        fields[key] = match.group(1)
    return fields


def test_status_shows_the_releases_and_health_and_follows_a_rollback(bed: Bed) -> None:
    arrange(bed, "v1", "v2")
    v1, v2 = bed.releases["v1"], bed.releases["v2"]
    run = bed.playbook("status.yml")
    assert run.rc == 0, run.output[-4000:]
    fields = status_fields(run.output)
    assert fields["current"].split()[0] == v2
    assert fields["previous"] == v1
    assert fields["retained"].split(", ") == [v2[:12], v1[:12]]
    assert fields["health"].startswith("healthy")

    run = bed.playbook("rollback.yml")
    assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == "v1"

    run = bed.playbook("status.yml")
    assert run.rc == 0, run.output[-4000:]
    fields = status_fields(run.output)
    assert fields["current"].split()[0] == v1
    assert fields["previous"] == v2
    assert fields["retained"].split(", ") == [v1[:12], v2[:12]]
    assert fields["health"].startswith("healthy")


# --------------------------------------------------------------------------- a pruned image


def test_a_rollback_to_a_release_whose_image_is_gone_is_refused(bed: Bed) -> None:
    arrange(bed, "v2", "v1")
    v2 = bed.releases["v2"]
    # v2 runs on as the standby (app_keep_standby): gone with its image here
    bed.sh(f"docker ps -aq --filter label=io.melk.sha={v2} | xargs -r docker rm -f")
    bed.sh(f"docker rmi {app.pull_repository()}:{v2}")
    before = (bed.state(), bed.sh(f"cat {UPSTREAM}"), containers(bed))
    run = bed.playbook("rollback.yml", "-e", f"sha={v2}")
    assert run.rc != 0
    assert "is no longer on this host" in run.output
    assert f"deploy.yml -e sha={v2}" in run.output, "it says what to do instead"
    assert (bed.state(), bed.sh(f"cat {UPSTREAM}"), containers(bed)) == before
    assert bed.served_version() == "v1"


def test_a_deploy_removes_as_it_starts_only_the_images_no_outcome_retains(bed: Bed) -> None:
    """With one release retained and no standby: deploying v3 over v2 (v1 before it)
    removes v1's image as v3 starts; v2's stays, since a failed v3 would keep v2."""
    options = ("-e", "app_deploy_keep_releases=1", "-e", "app_keep_standby=false")
    serve(bed, "v1")
    run = deploy(bed, "v2", *options)
    assert run.rc == 0, run.output[-4000:]
    run = deploy(bed, "v3", *options)
    assert run.rc == 0, run.output[-4000:]
    tags = bed.sh(f"docker images --format '{{{{.Tag}}}}' {app.pull_repository()}").split()
    assert bed.releases["v1"] not in tags
    assert bed.releases["v2"] in tags and bed.releases["v3"] in tags
    assert "Retire the old release" in run.output  # no standby: the old one is stopped
    assert "melk-ai-" + bed.state()["current"]["slot"] in bed.sh("docker ps --format '{{.Names}}'")
    # v1 serves again for the tests below, with the default options
    run = deploy(bed, "v1")
    assert run.rc == 0, run.output[-4000:]


# --------------------------------------------------------------------------- secrets in output


@pytest.mark.parametrize(
    ("release", "flag", "greeting"),
    [("v3", "-vvv", "at-vvv"), ("v2", "--diff", "with-diff")],
)
def test_no_secret_in_the_output_of_a_verbose_or_diff_deploy(
    bed: Bed, release: str, flag: str, greeting: str
) -> None:
    # A new app_env, so that this run writes the env file (and would show it).
    app_env = {**GROUP_VARS["app_env"], "APP_GREETING": greeting}  # type: ignore[dict-item]
    run = deploy(bed, release, flag, "-e", json.dumps({"app_env": app_env}))
    assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == release
    assert f"APP_GREETING={greeting}" in bed.sh("cat /opt/melk-ai/app.env")
    if flag == "-vvv":
        assert "ESTABLISH SSH CONNECTION" in run.output, "the output should be verbose"
    assert SENTINEL not in run.output


# --------------------------------------------------------------------------- fleet


def test_without_fleet_rollback_hosts_that_moved_keep_the_new_release(pair: Bed) -> None:
    """Serial deploy on two hosts; the second fails: with deploy_fleet_rollback=false
    the first keeps the new release. (The default, moving it back, is
    test_rollback.py's fleet test.)"""
    first, second = pair.servers
    run = deploy(pair, "v1", "-e", "deploy_serial=1")
    assert run.rc == 0, run.output[-4000:]
    # v2 is unhealthy on the second host only (its app_env overrides the app's mode)
    inventory = json.loads(pair.inventory.read_text())
    inventory["all"]["hosts"][second.name]["app_env"] = {
        **GROUP_VARS["app_env"],  # type: ignore[dict-item]
        "APP_MODE": "unhealthy",
    }
    poisoned = STATE_DIR / "e2e" / "options-pair-poisoned.json"
    poisoned.write_text(json.dumps(inventory))
    run = deploy(
        pair,
        "v2",
        "-e",
        "deploy_serial=1",
        "-e",
        "deploy_fleet_rollback=false",
        *SHORT_GATE,
        inventory=poisoned,
    )
    assert run.rc != 0
    assert "health check failed" in run.output
    assert pair.served_version(first) == "v2"
    state = pair.state(first.name)
    assert state["current"]["sha"] == pair.releases["v2"]
    assert [(e["kind"], e["status"]) for e in state["history"][:1]] == [("deploy", "succeeded")]
    assert pair.served_version(second) == "v1"
    state = pair.state(second.name)
    assert state["current"]["sha"] == pair.releases["v1"]
    assert (state["history"][0]["sha"], state["history"][0]["status"]) == (
        pair.releases["v2"],
        "failed",
    )
