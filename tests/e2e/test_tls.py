"""TLS at the edge over real SSH (issue 15, item 2): a supplied certificate served on three
hosts, and a certificate issued by Pebble (a real ACME server, HTTP-01 validated against
the server's nginx) served, renewed and verified against Pebble's root.

nginx reads its certificate file at each TLS handshake (a variable in ssl_certificate), so
a renewed or replaced certificate is served without a reload, which would close every idle
keep-alive connection: the renewal, the replacement, a deploy and a rollback run under wrk
over HTTPS, 64 keep-alive connections beside 4 that open a new connection (a full TLS
handshake) per request, both paced (testbed/wrk.py), and must cost no request.

Their servers are their own (MELK_E2E_TLS_SERVER, default melk-e2e-tls, with port 443
published; MELK_E2E_TLS_FLEET, default melk-e2e-tlsf1..3, with 8443), so the file runs
beside the rest of the e2e suite (make e2e-tls).
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from testbed import app, engine, images, registry, servers
from testbed.bed import E2E_DIR, GROUP_VARS, Bed, start_bed, stop_bed
from testbed.tls import ACME_HOST, Pebble, Pem, http_get, https_get, issue, make_ca, write_private
from testbed.wrk import (
    NEW_CONNECTIONS,
    TEST_HANDSHAKE_CONNECTIONS,
    TEST_HANDSHAKE_PACE_MS,
    TEST_PACE_MS,
    KeepAlive,
    WrkResult,
    keepalive_load,
)

pytestmark = pytest.mark.e2e

NAME = "app.melk-tls.test"
FLEET_TLS_PORT = 8443
HSTS = 300
TLS_DIR = E2E_DIR / "tls"


@pytest.fixture(scope="module")
def v1() -> str:
    engine.ensure_engine()
    images.build_all(["server-provisioned", "app-base"])
    registry.start()
    return app.build_release("v1")


@dataclass
class HttpsLoad:
    """wrk over HTTPS: keep-alive connections and new-connection ones; filled in on exit."""

    kept: KeepAlive
    new: KeepAlive

    def results(self) -> tuple[WrkResult, WrkResult]:
        assert self.kept.result is not None and self.new.result is not None
        return self.kept.result, self.new.result


# During a provisioning (minutes long, the replacement below): one request per kept-alive
# connection every second, and one new-connection one sending a request a second. In a
# CI run, 4 new-connection ones at 100 ms took wrk 0.66 of a core for the 6.5 minutes
# that provisioning lasted there: wrk's CPU follows the handshakes in progress, and a
# handshake takes longer the busier the machine.
PROVISION_PACE_MS = 1000
PROVISION_HANDSHAKE_CONNECTIONS = 1


@contextmanager
def https_load(
    port: int,
    pace_ms: int = TEST_PACE_MS,
    handshake_connections: int = TEST_HANDSHAKE_CONNECTIONS,
) -> Iterator[HttpsLoad]:
    """64 keep-alive connections and `handshake_connections` new-connection ones (a TLS
    handshake per request) to https://127.0.0.1:port/version while the block runs: the
    kept-alive ones a request each per `pace_ms`, the others per TEST_HANDSHAKE_PACE_MS
    or `pace_ms`, whichever is longer (testbed/wrk.py); wrk sends SNI 127.0.0.1: the
    port's only HTTPS server answers."""
    url = f"https://127.0.0.1:{port}/version"
    with (
        keepalive_load(url, pace_ms=pace_ms) as kept,
        keepalive_load(
            url,
            headers=NEW_CONNECTIONS,
            connections=handshake_connections,
            pace_ms=max(pace_ms, TEST_HANDSHAKE_PACE_MS),
        ) as new,
    ):
        yield HttpsLoad(kept, new)


# Answers each shape must have had (kept-alive, new-connection): the load ran through the
# command. A certificate renewal takes a few seconds, and the new-connection shape is paced
# (about 15 handshakes a second on an idle machine).
MIN_ANSWERS = (100, 20)


def assert_nothing_failed(load: HttpsLoad) -> None:
    for result, least in zip(load.results(), MIN_ANSWERS, strict=True):
        print(result.summary())
        assert result.requests >= least, result.summary()
        assert result.socket_errors == 0, result.summary()
        assert result.non_2xx == 0, result.summary()


def nginx_pids(bed: Bed, host: str | None = None) -> str:
    """nginx's master and workers: the same pids when nginx did not reload."""
    return bed.sh("pgrep -d, nginx", host).strip()


@pytest.fixture(scope="module")
def v2(v1: str) -> str:
    return app.build_release("v2")


def key_lines(key: str) -> list[str]:
    """The base64 lines of a PEM key: none may appear in any output."""
    return [line for line in key.splitlines() if line and not line.startswith("-----")]


# ------------------------------------------------------------ supplied certificate


@dataclass
class Supplied:
    bed: Bed
    ca: Pem
    ca_file: Path
    leaf: Pem
    vars_file: Path


@pytest.fixture(scope="module")
def supplied(v1: str) -> Iterator[Supplied]:
    """Three servers provisioned with a certificate from a CA made here, v1 deployed."""
    ca = make_ca("melk e2e supplied CA")
    leaf = issue(ca, [NAME])
    ca_file = TLS_DIR / "supplied-ca.pem"
    ca_file.parent.mkdir(parents=True, exist_ok=True)
    ca_file.write_text(ca.certificate)
    settings = {
        "proxy_server_names": [NAME],
        "proxy_tls_port": FLEET_TLS_PORT,
        "proxy_tls_certificate": leaf.certificate,
        "proxy_tls_key": leaf.key,
        "proxy_hsts_seconds": HSTS,
    }
    vars_file = write_private(TLS_DIR / "supplied-vars.json", json.dumps(settings))
    prefix = os.environ.get("MELK_E2E_TLS_FLEET", "melk-e2e-tlsf")
    names = [f"{prefix}{i}" for i in (1, 2, 3)]
    bed = start_bed(
        names,
        {"v1": v1},
        E2E_DIR / f"tls-fleet-{prefix}.json",
        server_args=("-p", f"127.0.0.1::{FLEET_TLS_PORT}"),
        provision_args=("-e", f"@{vars_file}"),
    )
    try:
        run = bed.playbook("deploy.yml", "-e", f"sha={v1}", "-e", f"@{vars_file}")
        assert run.rc == 0, run.output[-4000:]
        yield Supplied(bed, ca, ca_file, leaf, vars_file)
    finally:
        stop_bed(bed)


def test_supplied_certificate_is_served_on_every_host(supplied: Supplied) -> None:
    expected = x509.load_pem_x509_certificate(supplied.leaf.certificate.encode())
    for server in supplied.bed.servers:
        port = servers.published(server.name, FLEET_TLS_PORT)
        answer = https_get(port, "/headers", NAME, supplied.ca_file)
        assert answer.status == 200, (server.name, answer)
        assert answer.peer() == expected, server.name
        assert answer.tls_version in {"TLSv1.2", "TLSv1.3"}
        body = answer.json()
        assert body["version"] == "v1"
        headers = body["headers"]
        assert isinstance(headers, dict)
        assert headers["X-Forwarded-Proto"] == "https", headers
        assert headers["Host"] == NAME, headers
        assert headers.get("X-Forwarded-For"), headers
        assert answer.headers["strict-transport-security"] == f"max-age={HSTS}"


def test_tls_1_2_is_accepted_and_other_cas_are_not(supplied: Supplied) -> None:
    server = supplied.bed.servers[0]
    port = servers.published(server.name, FLEET_TLS_PORT)
    only_12 = ssl.create_default_context(cafile=str(supplied.ca_file))
    only_12.maximum_version = ssl.TLSVersion.TLSv1_2
    answer = https_get(port, "/version", NAME, supplied.ca_file, context=only_12)
    assert (answer.status, answer.tls_version) == (200, "TLSv1.2")
    other = TLS_DIR / "other-ca.pem"
    other.write_text(make_ca("not the server's CA").certificate)
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(port, "/version", NAME, other)


def test_plain_http_redirects_to_https_keeping_the_tls_port(supplied: Supplied) -> None:
    for server in supplied.bed.servers:
        answer = http_get(server.http_port, "/version?x=1", NAME)
        assert answer.status == 301, (server.name, answer)
        assert answer.headers["location"] == f"https://{NAME}:{FLEET_TLS_PORT}/version?x=1"


def test_replaced_certificate_is_served_without_a_reload_and_no_key_is_ever_printed(
    supplied: Supplied,
) -> None:
    """A new certificate and key (from the same CA), provisioned with --diff under wrk over
    HTTPS on the first host: served from the next handshake on, nginx not reloaded, no
    request lost. The file changes, so the key would show in the diff but for no_log.

    The load is paced (PROVISION_*): at full speed for a whole provisioning of three hosts
    it held two CPU-bound cores for 8 minutes of make test and starved the other lanes. A
    reload would still show: it closes the kept-alive connections, which a paced load
    holds idle between its requests (a read error on the next one), and nginx's processes
    are compared."""
    bed = supplied.bed
    ca = supplied.ca
    renewed = issue(ca, [NAME])
    settings = {**json.loads(supplied.vars_file.read_text())}
    settings.update(proxy_tls_certificate=renewed.certificate, proxy_tls_key=renewed.key)
    vars_file = write_private(TLS_DIR / "supplied-vars-2.json", json.dumps(settings))
    pids = {server.name: nginx_pids(bed, server.name) for server in bed.servers}
    port = servers.published(bed.server.name, FLEET_TLS_PORT)
    with https_load(
        port, pace_ms=PROVISION_PACE_MS, handshake_connections=PROVISION_HANDSHAKE_CONNECTIONS
    ) as load:
        run = bed.playbook("provision.yml", "-e", f"@{vars_file}", "--diff", "-v")
    assert run.rc == 0, run.output[-4000:]
    assert_nothing_failed(load)
    expected = x509.load_pem_x509_certificate(renewed.certificate.encode())
    for server in bed.servers:
        port = servers.published(server.name, FLEET_TLS_PORT)
        assert https_get(port, "/version", NAME, supplied.ca_file).peer() == expected
        assert nginx_pids(bed, server.name) == pids[server.name], "nginx reloaded"
        # one file, the chain then the key, which nginx's workers (www-data) read
        files = bed.sh("ls /etc/nginx/tls", server.name).split()
        assert files == ["melk-ai.pem"], server.name
        mode = bed.sh("stat -c '%a %U %G' /etc/nginx/tls/melk-ai.pem", server.name).strip()
        assert mode == "640 root www-data", server.name
    outputs = "\n".join(bed.outputs)
    assert len(bed.outputs) >= 3
    for line in key_lines(supplied.leaf.key) + key_lines(renewed.key):
        assert line not in outputs


def test_turning_tls_off_serves_plain_http_and_removes_the_certificate_file(
    supplied: Supplied,
) -> None:
    """Provisioned without the TLS settings: plain HTTP proxies again, and the file that
    held the key is gone once nginx no longer names it."""
    bed = supplied.bed
    run = bed.playbook("provision.yml")
    assert run.rc == 0, run.output[-4000:]
    for server in bed.servers:
        answer = http_get(server.http_port, "/version", NAME)
        assert answer.status == 200, (server.name, answer)
        assert bed.sh("ls -A /etc/nginx/tls", server.name).split() == [], server.name


# ----------------------------------------------------------------- ACME (Pebble)


@dataclass
class Acme:
    bed: Bed
    pebble: Pebble
    root_file: Path
    https_port: int


EMPTY_APT_LISTS = "rm -rf /var/lib/apt/lists/* && touch /var/lib/apt/lists"


def trust_on_server(server: str, ca_pem: str) -> None:
    """Add a CA to a test server's system store (certbot's requests reads it)."""
    subprocess.run(
        [
            "docker",
            "exec",
            "-i",
            server,
            "sh",
            "-c",
            "cat > /usr/local/share/ca-certificates/melk-pebble-listener.crt "
            "&& update-ca-certificates >/dev/null",
        ],
        input=ca_pem,
        text=True,
        check=True,
    )


@pytest.fixture(scope="module")
def acme(v1: str) -> Iterator[Acme]:
    """One server provisioned with proxy_acme_email against Pebble, v1 deployed."""
    name = os.environ.get("MELK_E2E_TLS_SERVER", "melk-e2e-tls")
    servers.ssh_key()
    server = servers.start(
        name,
        images.SERVER_PROVISIONED.ref,
        ("-p", "127.0.0.1::443", "--add-host", f"{ACME_HOST}:host-gateway"),
    )
    pebble: Pebble | None = None
    bed = Bed(server, E2E_DIR / f"{name}.json", {"v1": v1}, [server])
    try:
        pebble = Pebble(server.ip).start()
        trust_on_server(name, pebble.listener_ca.read_text())
        # As an image built within the hour leaves it: no package lists, and a
        # lists directory cache_valid_time takes for fresh (certbot is not in
        # the image, so provisioning must refresh the lists to install it).
        subprocess.run(
            ["docker", "exec", name, "sh", "-c", EMPTY_APT_LISTS],
            check=True,
        )
        settings = {
            "proxy_server_names": [NAME],
            "proxy_acme_email": "ops@example.org",
            "proxy_acme_directory": pebble.directory_url,
        }
        bed.inventory = servers.write_inventory(bed.inventory, [server], {**GROUP_VARS, **settings})
        run = bed.playbook("provision.yml")
        assert run.rc == 0, run.output[-4000:]
        run = bed.playbook("deploy.yml", "-e", f"sha={v1}")
        assert run.rc == 0, run.output[-4000:]
        root_file = TLS_DIR / "pebble-root.pem"
        root_file.parent.mkdir(parents=True, exist_ok=True)
        root_file.write_text(pebble.root())
        yield Acme(bed, pebble, root_file, servers.published(name, 443))
    finally:
        if pebble is not None:
            pebble.stop()
        stop_bed(bed)


def test_pebble_certificate_is_served_and_verified_against_its_root(acme: Acme) -> None:
    answer = https_get(acme.https_port, "/headers", NAME, acme.root_file)
    assert answer.status == 200, answer
    # no proxy_hsts_seconds: no HSTS header
    assert "strict-transport-security" not in answer.headers
    names = answer.peer().extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == [NAME]
    body = answer.json()
    assert body["version"] == "v1"
    headers = body["headers"]
    assert isinstance(headers, dict)
    assert headers["X-Forwarded-Proto"] == "https", headers


def test_http_redirects_except_the_acme_challenge_path(acme: Acme) -> None:
    port = acme.bed.server.http_port
    answer = http_get(port, "/version", NAME)
    assert (answer.status, answer.headers["location"]) == (301, f"https://{NAME}/version")
    missing = http_get(port, "/.well-known/acme-challenge/none", NAME)
    assert missing.status == 404, missing


RENEWAL_CONF = "/etc/letsencrypt/renewal/melk-ai.conf"
EDGE_HOOK = "renew_hook = /usr/local/sbin/edge-proxy-certificate /etc/nginx/tls"


def test_provisioning_again_keeps_the_certificate_not_yet_due(acme: Acme) -> None:
    """And gives a certificate obtained by an earlier version of the role (its renewal
    hook reloaded nginx) the edge's hook, which reloads nothing."""
    bed = acme.bed
    assert EDGE_HOOK in bed.sh(f"cat {RENEWAL_CONF}")
    bed.sh(f"sed -i 's|^renew_hook = .*|renew_hook = systemctl reload nginx|' {RENEWAL_CONF}")
    before = https_get(acme.https_port, "/version", NAME, acme.root_file).peer()
    run = bed.playbook("provision.yml")
    assert run.rc == 0, run.output[-4000:]
    assert "ok: [" in run.output.split("Obtain the ACME certificate", 1)[1].split("TASK", 1)[0]
    after = https_get(acme.https_port, "/version", NAME, acme.root_file).peer()
    assert after.serial_number == before.serial_number
    hooks = [line for line in bed.sh(f"cat {RENEWAL_CONF}").splitlines() if "renew_hook" in line]
    assert hooks == [EDGE_HOOK]


def test_renewal_under_https_load_is_served_at_once_without_a_reload(acme: Acme) -> None:
    """What certbot.timer runs when the certificate is due, forced now, under wrk over
    HTTPS: its deploy hook rewrites the file nginx reads at each handshake, so the new
    certificate is served as soon as certbot returns, nginx is not reloaded, and no
    request fails."""
    bed = acme.bed
    assert bed.sh("systemctl is-enabled certbot.timer").strip() == "enabled"
    assert EDGE_HOOK in bed.sh(f"cat {RENEWAL_CONF}")
    before = https_get(acme.https_port, "/version", NAME, acme.root_file).peer()
    pids = nginx_pids(bed)
    with https_load(acme.https_port) as load:
        bed.sh("certbot renew --force-renewal --no-random-sleep-on-renew -q")
        after = https_get(acme.https_port, "/version", NAME, acme.root_file).peer()
    assert after.serial_number != before.serial_number
    assert_nothing_failed(load)
    assert nginx_pids(bed) == pids, "nginx reloaded"


@pytest.mark.parametrize(
    ("playbook", "release"), [("deploy.yml", "v2"), ("rollback.yml", "v1")], ids=str
)
def test_deploy_and_rollback_under_https_load_drop_nothing(
    acme: Acme, v2: str, playbook: str, release: str
) -> None:
    bed = acme.bed
    bed.releases["v2"] = v2
    with https_load(acme.https_port) as load:
        run = bed.playbook(playbook, "-e", f"sha={bed.releases[release]}")
    assert run.rc == 0, run.output[-4000:]
    assert_nothing_failed(load)
    answer = https_get(acme.https_port, "/version", NAME, acme.root_file)
    assert answer.json()["version"] == release
