"""A deploy applies the app's edge settings when they differ from the host's, over real SSH.

App A (edge-a, routed by a.test) is provisioned and deployed beside the bed's default app
(melk-ai) and app C (edge-c, c.test). Then, WITHOUT provision.yml:
- a deploy with the same settings leaves nginx's files byte-identical and nginx's worker
  processes the same (no reload), and its include of edge_proxy's `site` is skipped;
- a deploy with a second name (b.test), a supplied certificate and HSTS serves b.test over
  HTTPS with the header, and says that it applied the settings; wrk's 64 keep-alive
  connections on melk-ai meanwhile measure what its one nginx reload costs the host;
- a deploy whose new name is C's is refused with nothing changed: the host's edge files,
  nginx's workers and A's release are as they were.

It uses the session's server (MELK_E2E_SERVER) and removes A and C at the end.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testbed.bed import E2E_DIR, Bed
from testbed.playbook import Run
from testbed.tls import Pem, http_get, https_get, issue, make_ca, write_private
from testbed.wrk import keepalive_load

pytestmark = pytest.mark.e2e

A = "edge-a"
C = "edge-c"
HSTS = 300
DIR = E2E_DIR / "edge-settings"
# nginx's configuration and the edge's records and certificates on the host (not the
# switch files: a deploy's switch rewrites its app's).
EDGE_FILES = "/etc/nginx/conf.d /etc/nginx/edge-proxy /etc/nginx/tls"
APPLY_TASK = "Apply the app's edge settings when they differ from the host's"
PREPARE_TASK = (
    "Prepare the release (site check, interrupted switch, edge settings, image, app.env,"
    " release command) where needed"
)
APPLIED = "the edge settings (proxy_*, edge_proxy_*) differed"
ADDRESSES = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
# A's containers, their state and start time: a refused deploy starts or stops none.
CONTAINERS = (
    f"docker ps -aq --filter name=^{A}- | sort | "
    "xargs -r docker inspect -f '{{.Name}} {{.State.Status}} {{.State.StartedAt}}'"
)


@dataclass
class Edge:
    bed: Bed
    releases: dict[str, str]
    ca: Pem = field(repr=False)
    ca_file: Path


def write_vars(name: str, values: dict[str, object]) -> Path:
    return write_private(DIR / f"{name}.json", json.dumps(values))


def a_vars(**extra: object) -> Path:
    return write_vars(
        "a-" + "-".join(sorted(extra)) if extra else "a",
        {
            "app_name": A,
            "proxy_server_names": ["a.test"],
            **extra,
        },
    )


def https_vars(edge: Edge, hsts: int) -> tuple[Pem, Path]:
    """A's settings with b.test, a certificate for both names and HSTS."""
    leaf = issue(edge.ca, ["a.test", "b.test"])
    return leaf, a_vars(
        proxy_server_names=["a.test", "b.test"],
        proxy_tls_certificate=leaf.certificate,
        proxy_tls_key=leaf.key,
        proxy_hsts_seconds=hsts,
    )


def edge_files(bed: Bed) -> str:
    """SHA-256 of every edge file on the host (nginx's sites, records, switch files, TLS)."""
    return bed.sh(
        f"find {EDGE_FILES} -type f ! -name '*.upstream' 2>/dev/null | sort | xargs sha256sum"
    )


def nginx_workers(bed: Bed) -> str:
    """nginx's master and worker processes: a reload replaces the workers."""
    return bed.sh("ps -o pid=,args= -C nginx | sort")


def deploy(edge: Edge, release: str, vars_file: Path) -> Run:
    return edge.bed.playbook(
        "deploy.yml", "-e", f"@{vars_file}", "-e", f"sha={edge.releases[release]}"
    )


def skipped(run: Run, task: str) -> bool:
    """The task ran in this run and was skipped on the controller."""
    after = run.output.split(f"{task}]", 1)
    return len(after) == 2 and after[1].lstrip(" *\n").startswith("skipping")


def apply_task_skipped(run: Run) -> bool:
    """The deploy's one include of edge_proxy's `site` was skipped on the controller, or
    the include of tasks/prepare.yml that holds it was (nothing there to do)."""
    return skipped(run, APPLY_TASK) or skipped(run, PREPARE_TASK)


def a_current(bed: Bed) -> str:
    raw = bed.sh(f"cat /opt/{A}/releases.json")
    return str(json.loads(raw)["current"]["sha"])


def server_address(bed: Bed) -> str:
    """The server container's address on this machine's Docker bridge (port 443 is not
    published: HTTPS is asked there)."""
    out = subprocess.run(
        ["docker", "inspect", "-f", ADDRESSES, bed.server.name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[0]


@pytest.fixture(scope="module")
def edge(bed: Bed, releases: dict[str, str]) -> Iterator[Edge]:
    """A provisioned with a.test and serving v1; C provisioned with c.test."""
    ca = make_ca("melk e2e edge settings CA")
    ca_file = DIR / "ca.pem"
    ca_file.parent.mkdir(parents=True, exist_ok=True)
    ca_file.write_text(ca.certificate)
    c_vars = write_vars("c", {"app_name": C, "proxy_server_names": ["c.test"]})
    for vars_file in (a_vars(), c_vars):
        run = bed.playbook("provision.yml", "-e", f"@{vars_file}")
        assert run.rc == 0, run.output[-4000:]
    edge = Edge(bed, releases, ca, ca_file)
    run = deploy(edge, "v1", a_vars())
    assert run.rc == 0, run.output[-4000:]
    # the default app serves too (wrk's load below goes to it)
    run = bed.playbook("deploy.yml", "-e", f"sha={releases['v1']}")
    assert run.rc == 0, run.output[-4000:]
    try:
        yield edge
    finally:
        # A and C go: their containers, sites, records, switch files, certificate, state.
        bed.sh(
            f"docker rm -f {A}-blue {A}-green {C}-blue {C}-green >/dev/null 2>&1; "
            f"rm -rf /etc/nginx/conf.d/{A}.conf /etc/nginx/conf.d/{C}.conf "
            f"/etc/nginx/edge-proxy/{A}.* /etc/nginx/edge-proxy/{C}.* "
            f"/etc/nginx/tls/{A}.pem /opt/{A} /opt/{C}; "
            f"nft delete chain ip edge_proxy app-{A}; nft delete chain ip edge_proxy app-{C}; "
            "systemctl reload nginx; true"
        )


def test_a_deploy_with_unchanged_settings_touches_no_edge_file_and_never_reloads(
    edge: Edge,
) -> None:
    files, workers = edge_files(edge.bed), nginx_workers(edge.bed)
    run = deploy(edge, "v2", a_vars())
    assert run.rc == 0, run.output[-4000:]
    assert a_current(edge.bed) == edge.releases["v2"]
    assert apply_task_skipped(run), run.output[-4000:]
    assert APPLIED not in run.output
    assert edge_files(edge.bed) == files
    assert nginx_workers(edge.bed) == workers


def test_a_deploy_applies_changed_names_certificate_and_hsts_without_provision(
    edge: Edge,
) -> None:
    bed = edge.bed
    leaf, changed = https_vars(edge, HSTS)
    workers = nginx_workers(bed)
    # A dry run says the settings would be applied, and applies nothing.
    files = edge_files(bed)
    dry = bed.playbook(
        "deploy.yml", "--check", "-e", f"@{changed}", "-e", f"sha={edge.releases['v3']}"
    )
    assert dry.rc == 0, dry.output[-4000:]
    assert "edge settings differ from those on the host: would be applied first" in " ".join(
        dry.output.split()
    ), dry.output[-4000:]
    assert (edge_files(bed), nginx_workers(bed)) == (files, workers)
    # What the one reload costs the host: keep-alive connections to the other app.
    with keepalive_load(f"{bed.server.url}/version") as kept:
        run = deploy(edge, "v3", changed)
    assert kept.result is not None
    print(f"\nmelk-ai under wrk while A's settings were applied: {kept.result.summary()}")
    assert run.rc == 0, run.output[-4000:]
    assert APPLIED in run.output and "nginx reloaded" in run.output
    assert leaf.key.splitlines()[1] not in run.output  # the key is never printed
    assert nginx_workers(bed) != workers  # the site changed: one reload
    assert a_current(bed) == edge.releases["v3"]

    address = server_address(bed)
    for name in ("a.test", "b.test"):
        answer = https_get(443, "/version", name, edge.ca_file, address=address)
        assert answer.status == 200
        assert json.loads(answer.body)["version"] == "v3"
        assert answer.headers["strict-transport-security"] == f"max-age={HSTS}"
    # plain HTTP for b.test is now A's: redirected to HTTPS, not the default app's page
    redirect = http_get(bed.server.http_port, "/version", "b.test")
    assert redirect.status == 301
    assert redirect.headers["location"] == "https://b.test/version"
    record = json.loads(bed.sh(f"cat /etc/nginx/edge-proxy/{A}.json"))
    assert record["server_names"] == ["a.test", "b.test"]
    assert record["tls"] == "supplied" and re.fullmatch(r"[0-9a-f]{64}", record["settings_digest"])

    # The same settings again: nothing to apply, no reload.
    files, workers = edge_files(bed), nginx_workers(bed)
    again = deploy(edge, "v1", changed)
    assert again.rc == 0, again.output[-4000:]
    assert apply_task_skipped(again) and APPLIED not in again.output
    assert (edge_files(bed), nginx_workers(bed)) == (files, workers)


def test_a_deploy_whose_new_name_another_app_holds_is_refused_with_nothing_changed(
    edge: Edge,
) -> None:
    bed = edge.bed
    serving = a_current(bed)
    files, workers = edge_files(bed), nginx_workers(bed)
    containers = bed.sh(CONTAINERS)
    taken = a_vars(proxy_server_names=["a.test", "c.test"])
    run = deploy(edge, "v2", taken)
    assert run.rc != 0, run.output[-6000:]
    assert f"server name c.test on port 80 is already app {C}'s" in run.output
    assert "refused before the host was changed" in run.output
    assert edge_files(bed) == files
    assert nginx_workers(bed) == workers
    assert a_current(bed) == serving
    assert bed.sh(CONTAINERS) == containers


def test_settings_whose_reload_failed_are_reloaded_by_the_next_deploy(edge: Edge) -> None:
    """nginx refuses a reload (a broken file beside the sites): the deploy stops before the
    release starts and the record names no digest; once the file is gone, the next deploy
    with the same settings reloads nginx, although the site's files are already written."""
    bed = edge.bed
    leaf, settings = https_vars(edge, HSTS * 2)
    serving = a_current(bed)
    address = server_address(bed)
    broken = "/etc/nginx/conf.d/zz-edge-settings-broken.conf"
    bed.sh(f"echo 'not_a_directive;' > {broken}")
    try:
        failed = deploy(edge, "v2", settings)
    finally:
        bed.sh(f"rm -f {broken}")
    assert failed.rc != 0, failed.output[-4000:]
    assert a_current(bed) == serving  # stopped before the release started
    assert json.loads(bed.sh(f"cat /etc/nginx/edge-proxy/{A}.json"))["settings_digest"] is None
    old = https_get(443, "/version", "a.test", edge.ca_file, address=address)
    assert old.headers["strict-transport-security"] != f"max-age={HSTS * 2}"

    workers = nginx_workers(bed)
    run = deploy(edge, "v2", settings)
    assert run.rc == 0, run.output[-4000:]
    assert APPLIED in run.output and "nginx reloaded" in run.output
    assert nginx_workers(bed) != workers
    new = https_get(443, "/version", "a.test", edge.ca_file, address=address)
    assert new.headers["strict-transport-security"] == f"max-age={HSTS * 2}"
    assert json.loads(new.body)["version"] == "v2"
    assert leaf.key.splitlines()[1] not in failed.output + run.output  # never printed
