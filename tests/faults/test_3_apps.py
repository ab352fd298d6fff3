"""Several apps on one host (issue 15, item 3): app A (melk-ai, the host's default server)
and app B (melk-b, routed by its name b.test) share the host and port 80.

Deploying, rolling back and breaking A happen under load on B (wrk's 64 keep-alive
connections and the suite's new-connection load, both sending Host: b.test): B's traffic
fails nothing, B's files are byte-identical (SHA-256 before and after), its containers are
the same ones, never restarted, and its nftables chain is unchanged. A name or the default
server another app holds is refused before the host changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultkit import FAULTS_DIR, Results

from testbed import app
from testbed.bed import Bed
from testbed.load import Traffic, under_load
from testbed.playbook import Run
from testbed.tls import http_get
from testbed.wrk import KeepAlive, WrkResult, keepalive_load

pytestmark = pytest.mark.e2e

A = "melk-ai"
B = "melk-b"
B_NAME = "b.test"
# What makes B B on this host: its files, its containers, its nftables chain.
B_FILES = [
    f"/etc/nginx/conf.d/{B}.conf",
    f"/etc/nginx/edge-proxy/{B}.upstream",
    f"/etc/nginx/edge-proxy/{B}.json",
    f"/etc/nginx/edge-proxy/{B}.maintenance.conf",
    f"/opt/{B}/releases.json",
    f"/opt/{B}/app.env",
]
CONTAINERS = "docker ps -a --filter name=^melk-b- --format '{{.ID}} {{.Names}} {{.State}}'"
RESTARTS = (
    "docker inspect -f '{{.Name}} {{.RestartCount}} {{.State.StartedAt}}' melk-b-blue melk-b-green"
)
# The whole host's edge configuration: a refused provision must leave it as it was.
EDGE_FILES = "/etc/nginx/conf.d /etc/nginx/edge-proxy"


@dataclass
class Apps:
    bed: Bed
    b_vars: Path
    releases: dict[str, str]


def write_vars(path: Path, values: dict[str, object]) -> Path:
    path.write_text(json.dumps(values))
    return path


@pytest.fixture(scope="module")
def apps(bed: Bed) -> Iterator[Apps]:
    """B provisioned beside A and serving b1 with b2 as its standby; A's releases for
    the rows below."""
    releases = {
        "b1": app.build_release("apps-b1"),
        "b2": app.build_release("apps-b2"),
        "a1": app.build_release("apps-a1"),
        "a-degrade": app.build_release(
            "apps-a2-degrade", "degrade", {"APP_DEGRADE_AFTER_REQUESTS": "100"}
        ),
    }
    b_vars = write_vars(FAULTS_DIR / "app-b.json", {"app_name": B, "proxy_server_names": [B_NAME]})
    run = bed.playbook("provision.yml", "-e", f"@{b_vars}")
    assert run.rc == 0, run.output[-4000:]
    for name in ("b1", "b2"):
        run = bed.playbook("deploy.yml", "-e", f"@{b_vars}", "-e", f"sha={releases[name]}")
        assert run.rc == 0, run.output[-4000:]
    yield Apps(bed, b_vars, releases)


def b_state(bed: Bed) -> dict[str, str]:
    """Everything of B that A's runs must leave alone."""
    sums = bed.sh(
        f"for f in {' '.join(B_FILES)}; do "
        'if [ -e "$f" ]; then sha256sum "$f"; else echo "no $f"; fi; done'
    )
    return {
        "files": sums,
        "containers": bed.sh(CONTAINERS),
        "restarts": bed.sh(RESTARTS),
        "chain": bed.sh(f"nft list chain ip edge_proxy app-{B}"),
    }


def host_edge(bed: Bed) -> str:
    return bed.sh(f"find {EDGE_FILES} -type f | sort | xargs sha256sum; docker ps -a -q | sort")


def b_version(bed: Bed) -> str:
    """The release B serves, asked through the host's edge proxy by B's name."""
    return str(http_get(bed.server.http_port, "/version", B_NAME).json()["version"])


def a_run_under_load_on_b(
    apps: Apps, playbook: str, *extra: str
) -> tuple[Run, Traffic, WrkResult, Traffic]:
    """A's playbook while B gets wrk's and the new-connection load (Host: b.test), and A
    a new-connection load of its own (a degrading release needs requests to degrade)."""
    url = apps.bed.server.url
    ka: KeepAlive
    with (
        keepalive_load(f"{url}/version", host=B_NAME) as ka,
        under_load(url, host=B_NAME) as on_b,
        under_load(url) as on_a,
    ):
        run = apps.bed.playbook(playbook, *extra)
    assert ka.result is not None
    print(
        f"\nA {playbook} {' '.join(extra)}: rc={run.rc}; B: {on_b.summary()}; {ka.result.summary()}"
    )
    return run, on_b, ka.result, on_a


def check_b_untouched(
    apps: Apps,
    results: Results,
    case: str,
    playbook: str,
    extra: tuple[str, ...],
    expect_rc: int | None,
) -> None:
    before = b_state(apps.bed)
    served = b_version(apps.bed)
    start = time.monotonic()
    run, on_b, wrk, _ = a_run_under_load_on_b(apps, playbook, *extra)
    after = b_state(apps.bed)
    changed = [key for key in before if before[key] != after[key]]
    results.add(
        case,
        "B: 0 failed, 0 wrk errors, its files (SHA-256), containers and nftables chain unchanged",
        f"A's run rc={run.rc}; B: {on_b.summary()}; {wrk.summary()}; B changed: "
        f"{', '.join(changed) or 'nothing'}",
        on_b,
        time.monotonic() - start,
    )
    if expect_rc is None:
        assert run.rc != 0, run.output[-4000:]
    else:
        assert run.rc == expect_rc, run.output[-4000:]
    assert on_b.failed == [], on_b.summary()
    assert on_b.total > 50 and wrk.requests > 500, (on_b.summary(), wrk.summary())
    assert wrk.socket_errors == 0 and wrk.non_2xx == 0, wrk.summary()
    assert set(on_b.versions) == {served}, on_b.summary()
    assert changed == [], {key: (before[key], after[key]) for key in changed}


def test_b_is_routed_by_name_and_a_stays_the_default_server(apps: Apps) -> None:
    bed = apps.bed
    assert b_version(bed) == "apps-b2"
    assert bed.served_version() != "apps-b2"  # no Host header: A, the default server
    record = json.loads(bed.sh(f"cat /etc/nginx/edge-proxy/{B}.json"))
    assert record["port_block"] == [18016, 16]
    assert record["server_names"] == [B_NAME]
    # its slots publish the block's 2nd and 3rd port, beside A's 18001 and 18002
    ports = bed.sh("docker ps --filter name=^melk-b- --format '{{.Ports}}'")
    assert "127.0.0.1:18017->" in ports or "127.0.0.1:18018->" in ports, ports
    assert "18001" not in ports and "18002" not in ports, ports
    status = bed.playbook("status.yml", "-e", f"@{apps.b_vars}")
    assert status.rc == 0, status.output[-4000:]
    assert apps.releases["b2"][:12] in status.output


def test_deploying_a_leaves_b_untouched(apps: Apps, results: Results) -> None:
    check_b_untouched(
        apps,
        results,
        "deploy of app A under load on app B (same host, same port 80)",
        "deploy.yml",
        ("-e", f"sha={apps.releases['a1']}"),
        0,
    )


def test_rolling_back_a_leaves_b_untouched(apps: Apps, results: Results) -> None:
    check_b_untouched(
        apps,
        results,
        "rollback of app A (to its standby) under load on app B",
        "rollback.yml",
        (),
        0,
    )


def test_breaking_a_leaves_b_untouched(apps: Apps, results: Results) -> None:
    check_b_untouched(
        apps,
        results,
        "app A's release degrades after its switch (automatic rollback) under load on app B",
        "deploy.yml",
        ("-e", f"sha={apps.releases['a-degrade']}", "-e", "app_verify_seconds=20"),
        None,
    )


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (
            {"app_name": "melk-c", "proxy_server_names": [B_NAME]},
            f"server name {B_NAME} on port 80 is already app {B}'s",
        ),
        (
            {"app_name": "melk-d"},
            f"port 80: app {A} is already its default server",
        ),
    ],
    ids=["b's name", "a second default server"],
)
def test_a_name_or_default_server_another_app_holds_is_refused_before_anything_changes(
    apps: Apps, results: Results, values: dict[str, object], says: str
) -> None:
    bed = apps.bed
    before = host_edge(bed)
    extra = write_vars(FAULTS_DIR / f"{values['app_name']}.json", values)
    start = time.monotonic()
    run = bed.playbook("provision.yml", "-e", f"@{extra}")
    after = host_edge(bed)
    claim = "B's name" if "proxy_server_names" in values else "the default server of port 80"
    results.add(
        f"provision of a third app claiming {claim}",
        "refused before the host changes: edge files and containers unchanged",
        f"rc={run.rc}; says: {says!r} {'yes' if says in run.output else 'NO'}; host "
        f"{'unchanged' if before == after else 'CHANGED'}",
        None,
        time.monotonic() - start,
    )
    assert run.rc != 0, run.output[-4000:]
    assert says in run.output, run.output[-4000:]
    assert before == after
