"""A certificate renewal under load (issue 15): a third app on the fault server,
melk-tls, serves HTTPS on 8443 (plain HTTP on 8080, no server names: the default
server of both) with a certificate from a CA made here. A renewed certificate and
key are provisioned while wrk holds 64 keep-alive HTTPS connections and opens 8
more with a new TLS handshake per request. nginx reads the certificate file at each
handshake (roles/edge_proxy, README "HTTPS"), so the renewal reloads nothing: 0
socket errors, 0 non-2xx, the new certificate served at once, nginx's processes
unchanged. The ACME path (certbot renew against Pebble, whose hook writes the same
file) is tested the same way in tests/e2e/test_tls.py.
"""

from __future__ import annotations

import json
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
from testbed.wrk import NEW_CONNECTIONS, KeepAlive, keepalive_load

pytestmark = pytest.mark.e2e

APP = "melk-tls"
NAME = "tls.melk-faults.test"
TLS_PORT = 8443  # published by the fault server (conftest)


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


def test_certificate_renewal_under_https_load_fails_nothing(
    bed: Bed, tls: Tls, results: Results
) -> None:
    renewed = issue(tls.ca, [NAME])
    vars_file = settings(renewed)
    nginx = bed.sh(NGINX_PIDS).strip()
    url = f"https://127.0.0.1:{tls.port}/version"
    kept: KeepAlive
    new: KeepAlive
    start = time.monotonic()
    with (
        keepalive_load(url) as kept,
        keepalive_load(url, headers=NEW_CONNECTIONS, connections=8) as new,
    ):
        run = bed.playbook("provision.yml", "-e", f"@{vars_file}")
    seconds = time.monotonic() - start
    served = https_get(tls.port, "/version", NAME, tls.ca_file).peer()
    expected = x509.load_pem_x509_certificate(renewed.certificate.encode())
    nginx_after = bed.sh(NGINX_PIDS).strip()
    assert kept.result is not None and new.result is not None
    results.add(
        "certificate renewed (a new certificate and key provisioned) under 64 keep-alive HTTPS"
        " connections and 8 opening a TLS handshake per request",
        "0 socket errors, 0 non-2xx; the new certificate served at once; nginx not reloaded",
        f"rc={run.rc}; new certificate served: {served == expected}; nginx processes unchanged:"
        f" {nginx_after == nginx}; keep-alive {kept.result.summary()}; new connections"
        f" {new.result.summary()}",
        None,
        seconds,
    )
    assert run.rc == 0, run.output[-4000:]
    for result in (kept.result, new.result):
        assert result.requests > 100, result.summary()
        assert result.socket_errors == 0 and result.non_2xx == 0, result.summary()
    assert served == expected
    assert nginx_after == nginx, "the renewal reloaded nginx"
