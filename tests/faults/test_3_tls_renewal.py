"""A certificate renewal under load (issue 15): a third app on the fault server,
melk-tls, serves HTTPS on 8443 (plain HTTP on 8080, no server names: the default
server of both) with a certificate from a CA made here. A renewed certificate and key
come in as certbot brings them: a new lineage, then certbot's deploy hook (the edge's
edge-proxy-certificate, which the role installs and certbot runs after each renewal)
replaces the one file nginx reads, while wrk holds 64 keep-alive HTTPS connections and
opens 4 more with a new TLS handshake per request, both paced (testbed/wrk.py). nginx reads
the certificate file at each handshake (roles/edge_proxy, README "HTTPS"), so the renewal
reloads nothing: 0 socket errors, 0 non-2xx, the new certificate served at once, nginx's
processes unchanged. certbot itself renewing against Pebble, and a replaced supplied certificate
provisioned, are tested the same way in tests/e2e/test_tls.py.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from faultkit import FAULTS_DIR, NGINX_PIDS, Results

from testbed import servers
from testbed.bed import Bed
from testbed.tls import Pem, https_get, issue, make_ca, write_private
from testbed.wrk import (
    NEW_CONNECTIONS,
    TEST_HANDSHAKE_CONNECTIONS,
    TEST_HANDSHAKE_PACE_MS,
    KeepAlive,
    keepalive_load,
)

pytestmark = pytest.mark.e2e

APP = "melk-tls"
NAME = "tls.melk-faults.test"
TLS_PORT = 8443  # published by the fault server (conftest)
# certbot's layout for the app's certificate, and the hook it runs after a renewal
LINEAGE = f"/etc/letsencrypt/live/{APP}"
HOOK = "RENEWED_LINEAGE={lineage} /usr/local/sbin/edge-proxy-certificate /etc/nginx/tls"
LOAD_AROUND = 5.0  # seconds of load at least, before and after the renewal
# The load must have run across the renewal: at least this many answers on each shape
# before the renewal, and as many more after it as could have been in flight at it (one
# per connection) plus this many: each of the handshake shape's answers is a handshake
# of its own, so at least MIN_ANSWERS of them began after the renewal. A loaded CI
# machine gave 92 new-handshake answers in 6.5 s, a starved one 12 in 15 s and once 2 in
# 11.7 s; so the test waits for them (up to EVIDENCE_S) rather than for a time.
MIN_ANSWERS = 8
EVIDENCE_S = 180.0


@dataclass
class Tls:
    ca: Pem
    ca_file: Path
    port: int


def settings(leaf: Pem) -> Path:
    values = {
        "app_name": APP,
        "proxy_port": 8080,
        "proxy_tls_port": TLS_PORT,
        "proxy_tls_certificate": leaf.certificate,
        "proxy_tls_key": leaf.key,
    }
    return write_private(FAULTS_DIR / "tls-app.json", json.dumps(values))


def write_lineage(bed: Bed, leaf: Pem) -> None:
    """The renewed chain and key where certbot keeps them (the key through stdin, mode 0600)."""
    for name, text in (("fullchain.pem", leaf.certificate), ("privkey.pem", leaf.key)):
        subprocess.run(  # nosec B603 B607: a fixed command line, the PEM on stdin
            [
                "docker",
                "exec",
                "-i",
                bed.server.name,
                "sh",
                "-c",
                f"mkdir -p {LINEAGE} && umask 077 && cat > {LINEAGE}/{name}",
            ],
            input=text,
            text=True,
            check=True,
        )


@pytest.fixture(scope="module")
def tls(bed: Bed) -> Iterator[Tls]:
    ca = make_ca("melk faults CA")
    ca_file = FAULTS_DIR / "tls-ca.pem"
    ca_file.write_text(ca.certificate)
    vars_file = settings(issue(ca, [NAME]))
    for playbook, extra in (
        ("provision.yml", ()),
        ("deploy.yml", ("-e", f"sha={bed.releases['v1']}")),
    ):
        run = bed.playbook(playbook, "-e", f"@{vars_file}", *extra)
        assert run.rc == 0, run.output[-4000:]
    yield Tls(ca, ca_file, servers.published(bed.server.name, TLS_PORT))


def enough_answers(
    kept: KeepAlive, new: KeepAlive, when: str, since: tuple[int, int] | None = None
) -> tuple[int, int]:
    """The answers each shape has had so far, once each has had MIN_ANSWERS (before the
    renewal), or MIN_ANSWERS + TEST_HANDSHAKE_CONNECTIONS more than `since` (after it); or fail."""
    bases = since or (0, 0)
    least = MIN_ANSWERS + (TEST_HANDSHAKE_CONNECTIONS if since else 0)
    for load, shape, base in ((kept, "keep-alive", bases[0]), (new, "new-connection", bases[1])):
        assert load.wait_for(base + least, EVIDENCE_S), (
            f"{shape} load: {load.answers - base} answers {when}, not {least} in {EVIDENCE_S:.0f} s"
        )
    return kept.answers, new.answers


def test_certificate_renewal_under_https_load_fails_nothing(
    bed: Bed, tls: Tls, results: Results
) -> None:
    renewed = issue(tls.ca, [NAME])
    write_lineage(bed, renewed)
    nginx = bed.sh(NGINX_PIDS).strip()
    url = f"https://127.0.0.1:{tls.port}/version"
    kept: KeepAlive
    new: KeepAlive
    start = time.monotonic()
    with (
        keepalive_load(url, lead=0, progress=True) as kept,
        keepalive_load(
            url,
            lead=0,
            headers=NEW_CONNECTIONS,
            connections=TEST_HANDSHAKE_CONNECTIONS,
            pace_ms=TEST_HANDSHAKE_PACE_MS,
            progress=True,
        ) as new,
    ):
        time.sleep(LOAD_AROUND)
        before = enough_answers(kept, new, "before the renewal")
        hook = bed.sh(HOOK.format(lineage=LINEAGE)).strip()
        time.sleep(LOAD_AROUND)
        after = enough_answers(kept, new, "after the renewal", since=before)
    seconds = time.monotonic() - start
    served = https_get(tls.port, "/version", NAME, tls.ca_file).peer()
    expected = x509.load_pem_x509_certificate(renewed.certificate.encode())
    nginx_after = bed.sh(NGINX_PIDS).strip()
    assert kept.result is not None and new.result is not None
    results.add(
        "certificate renewed (certbot's deploy hook writes the renewed chain and key) under 64"
        f" keep-alive HTTPS connections and {TEST_HANDSHAKE_CONNECTIONS} opening a TLS handshake"
        " per request (paced)",
        "0 socket errors, 0 non-2xx; the new certificate served at once; nginx not reloaded",
        f"hook: {hook}; new certificate served: {served == expected}; nginx processes unchanged:"
        f" {nginx_after == nginx}; answers before / after the renewal: keep-alive"
        f" {before[0]} / {after[0] - before[0]}, new connections {before[1]} /"
        f" {after[1] - before[1]}; keep-alive {kept.result.summary()}; new connections"
        f" {new.result.summary()}",
        None,
        seconds,
    )
    assert hook == "changed"
    for result in (kept.result, new.result):
        assert result.socket_errors == 0 and result.non_2xx == 0, result.summary()
    assert served == expected
    assert nginx_after == nginx, "the renewal reloaded nginx"
