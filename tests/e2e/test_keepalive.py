"""Keep-alive clients through a deploy, a rollback, an automatic rollback and an engine
restart (issue 15's switch): wrk holds 64 connections open through the edge proxy while
the e2e suite's own load opens a new connection per request, slow requests among them.

The switch is an nftables rule under nginx (filter_plugins/edge_upstream.py): nginx never
reloads, so no client connection is closed, and connections already forwarded finish on
the old release. Before it (an nginx reload per switch) wrk counted one read error per
connection at every deploy. Runs on its own server (MELK_E2E_SERVER) in file order.
"""

from __future__ import annotations

import pytest

from testbed.bed import Bed
from testbed.load import Traffic
from testbed.playbook import Run
from testbed.wrk import KeepAlive, WrkResult, keepalive_load

pytestmark = pytest.mark.e2e


def both_loads(bed: Bed, name: str, *extra: str) -> tuple[Run, Traffic, WrkResult]:
    """A playbook under wrk's keep-alive load and the suite's new-connection load."""
    ka: KeepAlive
    with keepalive_load(f"{bed.server.url}/version") as ka:
        run, traffic = bed.under_load(name, *extra)
    assert ka.result is not None
    print(ka.result.summary())
    return run, traffic, ka.result


def serve(bed: Bed, name: str) -> None:
    """Deploy `name` unless it serves already."""
    try:
        serving = bed.served_version()
    except OSError:  # no release yet: the proxy answers 502
        serving = ""
    if serving != name:
        run = bed.playbook("deploy.yml", "-e", f"sha={bed.releases[name]}")
        assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == name


def nginx_pids(bed: Bed) -> str:
    """nginx's processes, master and workers: the same after a switch when nginx never reloaded."""
    return bed.sh("pgrep -d, nginx")


def test_deploy_under_keepalive_load_drops_nothing(bed: Bed) -> None:
    serve(bed, "v1")
    before = nginx_pids(bed)
    run, traffic, wrk = both_loads(bed, "deploy.yml", "-e", f"sha={bed.releases['v2']}")
    assert run.rc == 0, run.output[-4000:]
    assert wrk.requests > 500, wrk.summary()
    assert wrk.socket_errors == 0, wrk.summary()
    assert wrk.non_2xx == 0, wrk.summary()
    assert traffic.failed == [], traffic.summary()
    assert traffic.slow_total > 0, "slow requests were in flight while traffic moved"
    assert traffic.versions["v1"] > 0 and traffic.versions["v2"] > 0
    assert nginx_pids(bed) == before, "nginx reloaded during the deploy"
    assert bed.served_version() == "v2"


def test_rollback_under_keepalive_load_drops_nothing(bed: Bed) -> None:
    serve(bed, "v2")
    run, traffic, wrk = both_loads(bed, "rollback.yml", "-e", f"sha={bed.releases['v1'][:7]}")
    assert run.rc == 0, run.output[-4000:]
    assert wrk.socket_errors == 0, wrk.summary()
    assert wrk.non_2xx == 0, wrk.summary()
    assert traffic.failed == [], traffic.summary()
    assert bed.served_version() == "v1"


def test_automatic_rollback_under_keepalive_load_drops_nothing_from_healthy_releases(
    bed: Bed,
) -> None:
    serve(bed, "v1")
    run, _, wrk = both_loads(
        bed, "deploy.yml", "-e", f"sha={bed.releases['degrade']}", "-e", "app_verify_seconds=20"
    )
    assert run.rc != 0
    assert "Rolled back automatically" in run.output
    assert wrk.socket_errors == 0, wrk.summary()
    assert wrk.non_2xx_by_release.get("v5-degrade", 0) > 0, "the bad release took traffic"
    assert wrk.non_2xx_except("v5-degrade") == 0, wrk.summary()
    assert bed.served_version() == "v1"


def test_engine_restart_under_load_fails_nothing(bed: Bed) -> None:
    """What an apt upgrade of docker.io does: the releases keep running (live-restore) and
    the switch goes to the container's address, not through a published port."""
    serve(bed, "v1")
    ka: KeepAlive
    with keepalive_load(f"{bed.server.url}/version") as ka, bed.traffic(lead=2.0) as traffic:
        bed.sh("systemctl restart docker")
    assert ka.result is not None
    print(ka.result.summary(), traffic.summary())
    assert ka.result.socket_errors == 0, ka.result.summary()
    assert ka.result.non_2xx == 0, ka.result.summary()
    assert traffic.failed == [], traffic.summary()
    assert bed.served_version() == "v1"
