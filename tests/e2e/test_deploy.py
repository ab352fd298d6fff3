"""Deploys over real SSH, under load through the edge proxy (issue 3's acceptance).

The tests run in file order against one server: v1, then v2 under load, then
failures that must leave v2 serving.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from testbed import app
from testbed.bed import SENTINEL, Bed

pytestmark = pytest.mark.e2e


# Bad input (15 cases, refused before any host is touched): tests/faults/test_1_input.py.


def test_first_deploy_serves_v1(bed: Bed) -> None:
    run = bed.playbook("deploy.yml", "-e", f"sha={bed.releases['v1']}")
    assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == "v1"
    state = bed.state()
    assert state["current"]["sha"] == bed.releases["v1"]


def test_deploy_v2_under_load_drops_nothing(bed: Bed) -> None:
    run, report = bed.under_load("deploy.yml", "-e", f"sha={bed.releases['v2']}")
    assert run.rc == 0, run.output[-4000:]
    assert report.total > 50
    assert report.failed == [], report.summary()
    assert report.versions["v1"] > 0 and report.versions["v2"] > 0
    assert bed.served_version() == "v2"
    # the old release keeps running as the standby (app_keep_standby), its image kept
    containers = bed.sh(
        "docker ps --format '{{.Label \"io.melk.sha\"}}' --filter label=io.melk.app=melk-ai"
    ).split()
    assert sorted(containers) == sorted([bed.releases["v1"], bed.releases["v2"]])
    images = bed.sh(f"docker images --format '{{{{.Tag}}}}' {app.pull_repository()}").split()
    assert bed.releases["v1"] in images


def test_release_that_never_gets_healthy_never_gets_traffic(bed: Bed) -> None:
    run, report = bed.under_load("deploy.yml", "-e", f"sha={bed.releases['unhealthy']}")
    assert run.rc != 0
    assert "health check failed" in run.output
    assert report.failed == [], report.summary()
    assert set(report.versions) == {"v2"}
    assert bed.served_version() == "v2"
    state = bed.state()
    assert state["current"]["sha"] == bed.releases["v2"]
    assert state["history"][0]["status"] == "failed"
    assert state["history"][0]["sha"] == bed.releases["unhealthy"]


def test_sha_not_in_registry_changes_nothing(bed: Bed) -> None:
    before = bed.state()
    run = bed.playbook("deploy.yml", "-e", "sha=" + "0" * 40)
    assert run.rc != 0
    assert "could not be pulled" in run.output
    assert bed.state() == before
    assert bed.served_version() == "v2"


def test_app_with_no_site_on_the_edge_is_refused_with_nothing_changed(bed: Bed) -> None:
    # v1's image is on the host and app.env exists: nothing else in tasks/prepare.yml has
    # work, so only the missing switch file makes the deploy include it and refuse.
    upstream = app.UPSTREAM
    containers = "docker ps -aq --no-trunc --filter label=io.melk.app=melk-ai | sort"
    images = bed.sh(f"docker images --format '{{{{.Tag}}}}' {app.pull_repository()}").split()
    assert bed.releases["v1"] in images
    before, running = bed.state(), bed.sh(containers)
    bed.sh(f"mv {upstream} {upstream}.aside")
    try:
        run = bed.playbook("deploy.yml", "-e", f"sha={bed.releases['v1']}")
        assert run.rc != 0
        assert "has no site on this host's edge proxy" in run.output, run.output[-4000:]
        assert "Start the new release" not in run.output
        assert bed.state() == before
        assert bed.sh(containers) == running
        assert bed.served_version() == "v2"
    finally:
        bed.sh(f"mv {upstream}.aside {upstream}")


def test_concurrent_deploy_stops_on_the_lock(bed: Bed) -> None:
    first = bed.spawn("deploy.yml", "-e", f"sha={bed.releases['v3']}")
    try:
        deadline = time.monotonic() + 60
        while "lock" not in bed.sh("ls /opt/melk-ai"):
            assert first.poll() is None, "the first deploy ended before it took the lock"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        state_before = bed.state()
        second = bed.playbook("deploy.yml", "-e", f"sha={bed.releases['v1']}")
        assert second.rc != 0
        assert "deploy lock" in second.output and "is held by" in second.output
        # it stopped at the lock: nothing after it ran (no timing: the machine is shared)
        assert "Pull " not in second.output and "Start the new release" not in second.output
        assert bed.state() == state_before
    finally:
        out, _ = first.communicate(timeout=300)
    bed.outputs.append(out)
    assert first.returncode == 0, out[-4000:]
    assert bed.served_version() == "v3"
    assert "lock" not in bed.sh("ls /opt/melk-ai")


def test_app_env_reaches_the_app_and_never_the_output(bed: Bed) -> None:
    with urllib.request.urlopen(f"{bed.server.url}/version", timeout=5) as resp:
        body = json.loads(resp.read())
    assert "APP_SECRET_TOKEN" in body["env_names"]
    assert bed.outputs, "no playbook output was captured"
    for output in bed.outputs:
        assert SENTINEL not in output
    assert SENTINEL not in bed.sh("cat /opt/melk-ai/releases.json")
    mode = bed.sh("stat -c '%a %U' /opt/melk-ai/app.env").strip()
    assert mode == "600 deploy"
    labels = bed.sh(
        "docker ps -aq --filter label=io.melk.app=melk-ai"
        " | xargs docker inspect --format '{{json .Config.Labels}}'"
    )
    assert "io.melk.sha" in labels
    assert SENTINEL not in labels
