"""The controller killed (SIGKILL to ansible-playbook) at four points of a
deploy, under load. After each: the service answers, the killed run's lock is
left (it records owner, run id and time, not a process it could check, so it
cannot tell its owner is gone), a plain deploy stops on it naming the holder,
and the documented step (-e deploy_lock_break=true) deploys the release.

Each case deploys a release the host has never seen; the points are read from
the server (faultkit), not from Ansible's output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from faultkit import (
    AFTER_START,
    AFTER_SWITCH,
    BEFORE_PULL,
    BEFORE_RELOAD,
    LOCK,
    Point,
    Results,
    kill_at,
)

from testbed.bed import Bed

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Case:
    label: str
    point: Point
    release: str
    # the proxy serves the new release when the controller dies (None: either;
    # a reload already sent to the host completes without its controller)
    switched: bool | None
    delay: float = 0.0
    extra: tuple[str, ...] = ()


CASES = [
    Case("before the pull", BEFORE_PULL, "v2", switched=False),
    Case("after the new container starts", AFTER_START, "v3", switched=False),
    # not in the list: the window a reload-only-when-changed switch
    # can lose (the next run finds the file already written)
    Case("between the upstream write and the reload", BEFORE_RELOAD, "v4", switched=None),
    Case("right after the switch", AFTER_SWITCH, "v5", switched=True),
    # 1.5 s into a 10 s watch of the public endpoint
    Case(
        "during verification",
        AFTER_SWITCH,
        "v6",
        switched=True,
        delay=1.5,
        extra=("-e", "app_verify_seconds=10"),
    ),
]


def version_of(bed: Bed, sha: str) -> str:
    return next(v for v, s in bed.releases.items() if s == sha)


def running(bed: Bed, sha: str) -> bool:
    return bool(bed.sh(f"docker ps -q --filter label=io.melk.sha={sha} --filter status=running"))


@pytest.mark.parametrize("case", CASES, ids=[c.label.replace(" ", "-") for c in CASES])
def test_controller_killed(bed: Bed, results: Results, case: Case) -> None:
    old_sha = bed.state()["current"]["sha"]
    old, new = version_of(bed, old_sha), case.release
    sha = bed.releases[new]
    with bed.traffic(0.5) as during:
        killed = kill_at(bed, case.point, sha, *case.extra, delay=case.delay)
    assert killed.watch.hit is not None, f"the deploy ended before it reached {case.label}"
    serving = bed.served_version()
    old_running = running(bed, old_sha)
    lock = json.loads(bed.sh(f"cat {LOCK} 2>/dev/null || echo null"))
    expected = {True: new, False: old, None: f"{old} or {new}"}[case.switched]
    results.add(
        f"kill: {case.label} ({old} -> {new})",
        f"answers ({expected}), 0 failed, lock left",
        f"serves {serving}; old container running: {old_running}; lock left: {lock is not None};"
        f" {killed.orphans} worker(s) outlived the controller",
        during,
        killed.seconds,
    )
    assert during.failed == [], during.summary()
    assert serving in expected.split(" or ")
    assert old_running, "the old release must still run: the kill came before retiring it"
    assert lock is not None and lock.get("run_id"), "the killed run leaves its lock"
    if case is CASES[0]:
        stopped = bed.playbook("deploy.yml", "-e", f"sha={sha}")
        results.add(
            "kill: next deploy without the stale-lock step",
            "stops at once on the lock, names the holder and the step",
            f"rc={stopped.rc}, names holder: {lock['owner'] in stopped.output}",
            None,
            stopped.seconds,
        )
        assert stopped.rc != 0
        assert "is held by" in stopped.output and lock["owner"] in stopped.output
        assert "deploy_lock_break=true" in stopped.output
    assert_next_deploy_succeeds(bed, results, case, sha)


def assert_next_deploy_succeeds(bed: Bed, results: Results, case: Case, sha: str) -> None:
    with bed.traffic(0.5) as report:
        run = bed.playbook("deploy.yml", "-e", f"sha={sha}", "-e", "deploy_lock_break=true")
    serving = bed.served_version()
    containers = bed.sh("docker ps -q --filter label=io.melk.app=melk-ai").split()
    results.add(
        f"kill: {case.label}, then deploy -e deploy_lock_break=true",
        f"rc=0, serves {case.release}, 0 failed, lock released",
        f"rc={run.rc}, serves {serving}, {len(containers)} container(s)",
        report,
        run.seconds,
    )
    assert run.rc == 0, run.output[-4000:]
    assert report.failed == [], report.summary()
    assert serving == case.release
    assert bed.state()["current"]["sha"] == sha
    assert bed.sh(f"test -e {LOCK} && echo held || echo free").strip() == "free"
    assert len(containers) == 1, containers
