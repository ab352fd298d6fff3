"""Fault-injection fixtures: one provisioned SSH server serving v1, releases in
the local registry, and the results table the suite writes at the end
(.testbed/faults/results.md, the source of docs/faults.md).

The test files run in name order on the same server; each leaves one release
serving and no lock behind. The host restarts come last.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from faultkit import BECOME_AUDIT, FAULTS_DIR, PLUGINS, RESULTS_FILE, Results

from testbed import ROOT, app, engine, images, registry
from testbed.bed import SLOW_REQUEST_S, Bed, slow_requests_of, start_bed, stop_bed

# One release per deploy of the suite, so every kill point deploys a release the
# host has never seen (the "before the pull" point needs that).
VERSIONS = ["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8"]

RESULTS = Results()
_STARTED = time.monotonic()


def build_releases() -> dict[str, str]:
    registry.start()
    return {version: app.build_release(version) for version in VERSIONS}


@pytest.fixture(scope="session")
def bed() -> Iterator[Bed]:
    """The server melk-fault-1 (MELK_FAULTS_SERVER), provisioned, serving v1."""
    engine.ensure_engine()
    images.build_all(["server-provisioned", "app-base"])
    FAULTS_DIR.mkdir(parents=True, exist_ok=True)
    BECOME_AUDIT.unlink(missing_ok=True)
    name = os.environ.get("MELK_FAULTS_SERVER", "melk-fault-1")
    audit = {
        "ANSIBLE_CALLBACK_PLUGINS": str(PLUGINS),
        # profile_tasks: per-task times in each output (kept in outputs/)
        "ANSIBLE_CALLBACKS_ENABLED": "become_audit,ansible.posix.profile_tasks",
        "MELK_BECOME_AUDIT": str(BECOME_AUDIT),
    }
    # The releases build while the server starts and is provisioned.
    with ThreadPoolExecutor(1) as pool:
        building = pool.submit(build_releases)
        # 8443: the HTTPS port of test_3_tls_renewal's app
        bed = start_bed(
            [name],
            {},
            FAULTS_DIR / "inventory.json",
            FAULTS_DIR / "cp",
            audit,
            server_args=("-p", "127.0.0.1::8443"),
        )
        bed.releases.update(building.result())
    try:
        run = bed.playbook("deploy.yml", "-e", f"sha={bed.releases['v1']}")
        assert run.rc == 0, run.output[-4000:]
        yield bed
    finally:
        keep_outputs(bed)
        stop_bed(bed)


def keep_outputs(bed: Bed) -> None:
    """Every playbook output of the run, for reading after a failure."""
    folder = FAULTS_DIR / "outputs"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.log"):
        old.unlink()
    for index, output in enumerate(bed.outputs):
        (folder / f"{index:02d}.log").write_text(output)


@pytest.fixture(scope="session")
def results() -> Results:
    return RESULTS


@pytest.fixture(autouse=True)
def _current_test(request: pytest.FixtureRequest) -> None:
    RESULTS.current = request.node.nodeid


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" or (report.when == "setup" and report.failed):
        RESULTS.settle(item.nodeid, bool(report.passed))
    if report.when == "call" and report.failed:
        slow = slow_requests_of(getattr(item, "funcargs", {}))
        if slow:
            report.sections.append((f"requests nginx took {SLOW_REQUEST_S:g} s or more", slow))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if RESULTS.rows:
        FAULTS_DIR.mkdir(parents=True, exist_ok=True)
        RESULTS_FILE.write_text(RESULTS.markdown(time.monotonic() - _STARTED))
        print(f"\nfault suite results ({RESULTS_FILE.relative_to(ROOT)}):\n")
        print(RESULTS.markdown(time.monotonic() - _STARTED))
