"""Ansible filters for TLS at the edge: which way the certificate comes, whether the TLS
settings hold together, and where plain HTTP redirects to.

Plain, pure functions (no I/O, inputs never mutated), each exposed by ``FilterModule`` under
its own name and unit tested without Ansible (tests/unit/test_tls_inputs.py). Like the other
validators, ``*_error`` returns ``''`` for valid input and otherwise a message that names the
variable. A message never contains PEM text: a private key passes through here, and
playbook output is kept by CI.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

TLS_OFF = "off"
TLS_SUPPLIED = "supplied"
TLS_ACME = "acme"
HTTPS_DEFAULT_PORT = 443
MAX_HSTS_SECONDS = 2**31 - 1
MAX_SERVER_NAME = 253

_BLOCK_RE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+?)\r?\n?-----END \1-----"
)
_KEY_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")
_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_IPV4_RE = re.compile(r"[0-9.]+")


def _given(value: object) -> bool:
    return value not in (None, "")


def tls_mode(certificate: object, acme_email: object = None) -> str:
    """How the edge gets its certificate: 'supplied' (PEM text given), 'acme' (an ACME
    e-mail and no certificate) or 'off' (plain HTTP only)."""
    if _given(certificate):
        return TLS_SUPPLIED
    if _given(acme_email):
        return TLS_ACME
    return TLS_OFF


def _pem_blocks(text: str) -> list[str]:
    """The labels of the PEM blocks in text, or [] when anything but blocks and blank
    space is in it."""
    labels: list[str] = []
    rest = text
    for match in _BLOCK_RE.finditer(text):
        labels.append(match.group(1))
        rest = rest.replace(match.group(0), "", 1)
    return labels if not rest.strip() else []


def certificate_error(value: object, name: str = "proxy_tls_certificate") -> str:
    """'' if value is PEM text of one or more certificates (the server's first, then its
    chain) that parse as X.509."""
    rule = (
        "it must be PEM text: the server certificate, then its intermediates, each between "
        "-----BEGIN CERTIFICATE----- and -----END CERTIFICATE-----"
    )
    if not isinstance(value, str):
        return f"{name} is invalid: {rule}"
    labels = _pem_blocks(value)
    if not labels or any(label != "CERTIFICATE" for label in labels):
        return f"{name} is invalid: {rule}"
    try:
        x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        return f"{name} is invalid: a CERTIFICATE block does not parse as an X.509 certificate"
    return ""


def key_error(value: object, name: str = "proxy_tls_key") -> str:
    """'' if value is the PEM text of one unencrypted private key. The message never
    contains the value."""
    rule = (
        "it must be the PEM text of one unencrypted private key (-----BEGIN PRIVATE KEY-----, "
        "or RSA / EC PRIVATE KEY)"
    )
    if not isinstance(value, str):
        return f"{name} is invalid: {rule}"
    labels = _pem_blocks(value)
    if labels == ["ENCRYPTED PRIVATE KEY"]:
        return f"{name} is invalid: the key is encrypted; nginx needs it without a passphrase"
    if len(labels) != 1 or labels[0] not in _KEY_LABELS:
        return f"{name} is invalid: {rule}"
    try:
        serialization.load_pem_private_key(value.encode(), password=None)
    except (ValueError, TypeError):
        return f"{name} is invalid: its PEM block does not parse as a private key"
    return ""


def key_matches_certificate(certificate: str, key: str) -> bool:
    """Whether key is the private key of certificate's first (the server's) certificate;
    both already passed certificate_error and key_error."""
    cert = x509.load_pem_x509_certificates(certificate.encode())[0]
    private = serialization.load_pem_private_key(key.encode(), password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(cert.public_key().public_bytes(*spki) == private.public_key().public_bytes(*spki))


def server_name_error(name_value: str, acme: bool) -> str:
    """'' if name_value is a DNS host name nginx and (for ACME) HTTP-01 can serve."""
    name = name_value.lower()
    if acme and name.startswith("*."):
        return "a wildcard name needs the DNS-01 challenge; ACME here uses HTTP-01"
    host = name[2:] if name.startswith("*.") else name
    if _IPV4_RE.fullmatch(host) or ":" in host:
        return "an IP address is not a host name"
    labels = host.split(".")
    if len(name) > MAX_SERVER_NAME or not all(_LABEL_RE.fullmatch(label) for label in labels):
        return "it must be a DNS name of letters, digits, '-' and '.' (e.g. 'app.example.com')"
    if acme and len(labels) < 2:
        return "ACME certificates are for fully qualified names (e.g. 'app.example.com')"
    return ""


def server_names_error(value: object, acme: bool = False, name: str = "proxy_server_names") -> str:
    """'' if value is a list of distinct host names; with acme, a non-empty one without
    wildcards."""
    if value in (None, ""):
        value = []
    if isinstance(value, str) or not isinstance(value, Sequence):
        return f"{name} is invalid: it must be a list of host names"
    if acme and not value:
        return (
            f"{name} is empty, but proxy_acme_email asks for an ACME certificate: list the "
            "host names the certificate is for"
        )
    for item in value:
        if not isinstance(item, str):
            return f"{name} is invalid: every entry must be a host name string"
        why = server_name_error(item, acme)
        if why:
            shown = repr(item) if len(item) <= 64 else f"(a name of {len(item)} characters)"
            return f"{name} entry {shown} is invalid: {why}"
    if len({str(item).lower() for item in value}) != len(value):
        return f"{name} is invalid: a name is listed twice"
    return ""


def acme_email_error(value: object, name: str = "proxy_acme_email") -> str:
    """'' if value looks like an e-mail address (the ACME account's contact)."""
    if isinstance(value, str) and len(value) <= 254 and _EMAIL_RE.fullmatch(value):
        return ""
    return f"{name} is invalid: it must be an e-mail address (e.g. 'ops@example.com')"


def acme_directory_error(value: object, name: str = "proxy_acme_directory") -> str:
    """'' if value is an https:// URL with a host (an ACME directory)."""
    rule = "it must be the https:// URL of an ACME directory"
    if not isinstance(value, str) or any(ch.isspace() for ch in value) or len(value) > 2048:
        return f"{name} is invalid: {rule}"
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        return f"{name} is invalid: {rule}"
    return ""


def _whole(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        return int(value)
    return None


def tls_port_error(value: object, proxy_port: object, name: str = "proxy_tls_port") -> str:
    """'' if value is a TCP port other than proxy_port."""
    port = _whole(value)
    if port is None or not 1 <= port <= 65535:
        return f"{name} is invalid: it must be a whole number from 1 to 65535"
    if port == _whole(proxy_port):
        return f"{name} {port} is invalid: proxy_port serves plain HTTP on it already"
    return ""


def hsts_seconds_error(value: object, name: str = "proxy_hsts_seconds") -> str:
    """'' if value is unset (none, '', 0: no header) or a whole number of seconds."""
    if value in (None, ""):
        return ""
    seconds = _whole(value)
    if seconds is None or not 0 <= seconds <= MAX_HSTS_SECONDS:
        return f"{name} is invalid: it must be a whole number of seconds (e.g. 31536000)"
    return ""


def tls_settings_error(settings: Mapping[str, Any]) -> str:
    """'' if the TLS settings hold together; otherwise every problem, joined by '; '.

    settings holds the public variables without their ``proxy_`` prefix: certificate, key,
    acme_email, acme_directory, server_names, tls_port, proxy_port, hsts_seconds.
    """
    certificate, key = settings.get("certificate"), settings.get("key")
    mode = tls_mode(certificate, settings.get("acme_email"))
    errors = [
        tls_port_error(settings.get("tls_port", HTTPS_DEFAULT_PORT), settings.get("proxy_port")),
        hsts_seconds_error(settings.get("hsts_seconds")),
        server_names_error(settings.get("server_names"), acme=mode == TLS_ACME),
    ]
    if _given(key) and not _given(certificate):
        errors.append("proxy_tls_key is given without proxy_tls_certificate: give both")
    if mode == TLS_SUPPLIED:
        if not _given(key):
            errors.append("proxy_tls_certificate is given without proxy_tls_key: give both")
        cert_why = certificate_error(certificate)
        key_why = key_error(key) if _given(key) else ""
        errors += [cert_why, key_why]
        parsed = _given(key) and not cert_why and not key_why
        if parsed and not key_matches_certificate(str(certificate), str(key)):
            errors.append(
                "proxy_tls_key is not the private key of proxy_tls_certificate's first "
                "certificate (the server's)"
            )
    if mode == TLS_ACME:
        errors.append(acme_email_error(settings.get("acme_email")))
        if _given(settings.get("acme_directory")):  # not given: Let's Encrypt's
            errors.append(acme_directory_error(settings.get("acme_directory")))
    return "; ".join(error for error in errors if error)


def https_redirect(tls_port: object) -> str:
    """The nginx target of plain HTTP's permanent redirect: the same host and URI over
    https, with the port when it is not 443."""
    port = _whole(tls_port)
    if port is None:
        raise ValueError("proxy_tls_port must be a whole number")
    suffix = "" if port == HTTPS_DEFAULT_PORT else f":{port}"
    return f"https://$host{suffix}$request_uri"


class FilterModule:
    """Ansible filter plugin: each function above under its own name."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        functions: tuple[Callable[..., Any], ...] = (
            tls_mode,
            tls_settings_error,
            https_redirect,
        )
        return {function.__name__: function for function in functions}
