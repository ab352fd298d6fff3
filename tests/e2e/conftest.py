"""End-to-end fixtures: a real SSH server with its own Docker engine and nginx,
a local registry holding sample app releases, and the real playbooks.

Test modules import what they share from testbed (testbed.bed), never from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from testbed import app, engine, images, registry
from testbed.bed import E2E_DIR, SLOW_REQUEST_S, Bed, slow_requests_of, start_bed, stop_bed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test shows the requests its servers' nginx was slow to answer (the edge's
    access log: on which side of nginx the time went)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        slow = slow_requests_of(getattr(item, "funcargs", {}))
        if slow:
            report.sections.append((f"requests nginx took {SLOW_REQUEST_S:g} s or more", slow))


def build_releases() -> dict[str, str]:
    """The registry, and sample releases in it: name -> sha."""
    registry.start()
    return {
        "v1": app.build_release("v1"),
        "v2": app.build_release("v2"),
        "v3": app.build_release("v3"),
        "unhealthy": app.build_release("v4-unhealthy", "unhealthy"),
        # healthy, until it has answered 100 real requests: passes the health
        # gate, takes traffic, then fails every request during verification
        "degrade": app.build_release(
            "v5-degrade", "degrade", {"APP_DEGRADE_AFTER_REQUESTS": "100"}
        ),
        # exits one second after start (and is restarted by its restart policy)
        "crash": app.build_release("v6-crash", "crash", {"APP_CRASH_AFTER": "1"}),
    }


@pytest.fixture(scope="session")
def building() -> Iterator[Future[dict[str, str]]]:
    """The sample releases, building in the background while the first server
    starts and is provisioned."""
    engine.ensure_engine()
    images.build_all(["server-provisioned", "app-base"])
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(build_releases)


@pytest.fixture(scope="session")
def releases(building: Future[dict[str, str]]) -> dict[str, str]:
    return building.result()


@pytest.fixture(scope="session")
def bed(building: Future[dict[str, str]]) -> Iterator[Bed]:
    """One SSH test server, provisioned. Tests share it in file order."""
    # Two people may run the e2e suite on one machine: MELK_E2E_SERVER names the server.
    name = os.environ.get("MELK_E2E_SERVER", "melk-e2e-1")
    bed = start_bed([name], {}, E2E_DIR / f"{name}.json")
    try:
        bed.releases.update(building.result())
    except BaseException:
        stop_bed(bed)
        raise
    yield bed
    stop_bed(bed)


@pytest.fixture(scope="module")
def fleet(releases: dict[str, str]) -> Iterator[Bed]:
    """Three SSH test servers, provisioned in one run. MELK_E2E_FLEET is their
    names' prefix (melk-e2e-f: melk-e2e-f1 .. melk-e2e-f3)."""
    prefix = os.environ.get("MELK_E2E_FLEET", "melk-e2e-f")
    names = [f"{prefix}{i}" for i in (1, 2, 3)]
    bed = start_bed(names, releases, E2E_DIR / f"fleet-{prefix}.json")
    yield bed
    stop_bed(bed)
