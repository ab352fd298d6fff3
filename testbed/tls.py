"""TLS for the test bed: a local CA and certificates it signs, HTTPS requests to a test
server's edge proxy with SNI and a chosen CA, and Pebble, a real ACME server.

Pebble (Debian's `pebble`) runs on this machine as two processes, like the registry:
`pebble-challtestsrv` answers DNS with one address (the test server's on the docker0
bridge), so Pebble's HTTP-01 validation really fetches the challenge from the server's
nginx on port 80; `pebble` serves the ACME directory on the bridge address, which test
servers reach as `acme.test` (--add-host acme.test:host-gateway). Pebble's own HTTPS
certificate comes from a CA made here: the test server must trust that CA (its system
store) for certbot to talk to the directory.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testbed import STATE_DIR, TestbedError, log, registry

ACME_HOST = "acme.test"
PEBBLE_PREFIX = "tls-pebble"


@dataclass(frozen=True)
class Pem:
    """A certificate (with its chain) and its private key, as PEM text."""

    certificate: str
    key: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_ca(common_name: str, days: int = 30) -> Pem:
    """A self-signed CA certificate and key."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pem(_cert_pem(cert), _key_pem(key))


def issue(ca: Pem, names: list[str], ips: tuple[str, ...] = (), days: int = 30) -> Pem:
    """A server certificate for names (and IP addresses) signed by ca."""
    ca_cert = x509.load_pem_x509_certificate(ca.certificate.encode())
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (names or ips)[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pem(_cert_pem(cert), _key_pem(key))


def write_private(path: Path, text: str) -> Path:
    """Write text to a file only this user reads (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


# ------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    peer_der: bytes = b""  # the server's certificate (DER), over HTTPS
    tls_version: str = ""

    def json(self) -> dict[str, object]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data

    def peer(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.peer_der)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to `address` (this machine) as if to `host`: SNI and the certificate check
    use the host name, the TCP connection goes to the address."""

    def __init__(self, host: str, port: int, address: str, context: ssl.SSLContext) -> None:
        super().__init__(host, port, context=context, timeout=15)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def client_context(cafile: Path, minimum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cafile))
    if minimum is not None:
        context.minimum_version = minimum
    return context


def https_get(
    port: int,
    path: str,
    server_name: str,
    cafile: Path,
    address: str = "127.0.0.1",
    context: ssl.SSLContext | None = None,
) -> Answer:
    """GET over HTTPS, the certificate verified against cafile for server_name."""
    conn = _PinnedHTTPS(server_name, port, address, context or client_context(cafile))
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        assert isinstance(conn.sock, ssl.SSLSocket)
        return Answer(
            resp.status,
            {k.lower(): v for k, v in resp.getheaders()},
            body,
            conn.sock.getpeercert(binary_form=True) or b"",
            conn.sock.version() or "",
        )
    finally:
        conn.close()


def http_get(port: int, path: str, host: str, address: str = "127.0.0.1") -> Answer:
    """GET over plain HTTP with a Host header; redirects are not followed."""
    conn = http.client.HTTPConnection(address, port, timeout=15)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


# --------------------------------------------------------------------- Pebble


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


@dataclass
class Pebble:
    """Pebble and its DNS (pebble-challtestsrv), started for one test server address."""

    target_ip: str
    directory_dir: Path = field(default_factory=lambda: STATE_DIR / PEBBLE_PREFIX)
    pids: list[int] = field(default_factory=list)
    port: int = 0
    management_port: int = 0
    listener_ca: Path = field(default_factory=Path)

    @property
    def directory_url(self) -> str:
        """The ACME directory as test servers reach it."""
        return f"https://{ACME_HOST}:{self.port}/dir"

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        with (self.directory_dir / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        self.pids.append(proc.pid)
        (self.directory_dir / f"{name}.pid").write_text(str(proc.pid))

    def start(self) -> Pebble:
        self.directory_dir.mkdir(parents=True, exist_ok=True)
        gateway = registry.bridge_gateway()
        self.port = free_port(gateway)
        self.management_port = free_port()
        dns_port = free_port()
        ca = make_ca("melk test bed: Pebble listener CA")
        listener = issue(ca, [ACME_HOST, "localhost"], ips=(gateway, "127.0.0.1"))
        self.listener_ca = self.directory_dir / "listener-ca.pem"
        self.listener_ca.write_text(ca.certificate)
        (self.directory_dir / "listener.pem").write_text(listener.certificate)
        write_private(self.directory_dir / "listener.key", listener.key)
        config = {
            "pebble": {
                "listenAddress": f"{gateway}:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(self.directory_dir / "listener.pem"),
                "privateKey": str(self.directory_dir / "listener.key"),
                # where its validation connects: the test server's nginx
                "httpPort": 80,
                "tlsPort": 443,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (self.directory_dir / "pebble-config.json").write_text(json.dumps(config, indent=2))
        self._spawn(
            f"{PEBBLE_PREFIX}-dns",
            [
                "pebble-challtestsrv",
                "-defaultIPv4",
                self.target_ip,
                "-defaultIPv6",
                "",
                "-dns01",
                f"127.0.0.1:{dns_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                f"127.0.0.1:{free_port()}",
            ],
        )
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
        self._spawn(
            PEBBLE_PREFIX,
            [
                "pebble",
                "-config",
                str(self.directory_dir / "pebble-config.json"),
                "-dnsserver",
                f"127.0.0.1:{dns_port}",
            ],
            env,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                self.root()
                break
            except OSError as err:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TestbedError(
                        f"Pebble did not answer: {err}; see {self.directory_dir}/*.log"
                    ) from err
                time.sleep(0.3)
        log(f"Pebble ACME directory on {gateway}:{self.port} ({self.directory_url})")
        return self

    def root(self) -> str:
        """Pebble's issuing root (PEM): what a client trusts to verify its certificates."""
        conn = http.client.HTTPSConnection(
            "127.0.0.1",
            self.management_port,
            context=client_context(self.listener_ca),
            timeout=5,
        )
        try:
            conn.request("GET", "/roots/0")
            resp = conn.getresponse()
            body = resp.read().decode()
        finally:
            conn.close()
        if resp.status != 200 or "BEGIN CERTIFICATE" not in body:
            raise OSError(f"Pebble's /roots/0 answered {resp.status}")
        return body

    def stop(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGTERM)
        self.pids.clear()
