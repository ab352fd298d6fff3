"""Unit tests for filter_plugins/tls_inputs.py: how the edge gets its certificate, the checks
of the TLS settings (PEM shape, the key matching the certificate, names, ports, ACME) and
the redirect target. No message may carry key text."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tls_inputs import (
    FilterModule,
    acme_directory_error,
    acme_email_error,
    certificate_error,
    hsts_seconds_error,
    https_redirect,
    key_error,
    server_names_error,
    tls_mode,
    tls_port_error,
    tls_settings_error,
)

from testbed.tls import Pem, issue, make_ca

NAME = "app.example.com"


@cache
def leaf() -> Pem:
    return issue(make_ca("unit CA"), [NAME])


@cache
def other() -> Pem:
    return issue(make_ca("other CA"), [NAME])


def settings(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "certificate": leaf().certificate,
        "key": leaf().key,
        "acme_email": "",
        "acme_directory": "",
        "server_names": [NAME],
        "tls_port": 443,
        "proxy_port": 80,
        "hsts_seconds": "",
    }
    return {**base, **overrides}


def key_body(key: str) -> list[str]:
    return [line for line in key.splitlines() if line and not line.startswith("-----")]


@pytest.mark.parametrize(
    ("certificate", "email", "mode"),
    [
        ("PEM", "", "supplied"),
        ("PEM", "ops@example.com", "supplied"),
        ("", "ops@example.com", "acme"),
        (None, "ops@example.com", "acme"),
        ("", "", "off"),
        (None, None, "off"),
    ],
)
def test_tls_mode(certificate: str | None, email: str | None, mode: str) -> None:
    assert tls_mode(certificate, email) == mode


def test_valid_supplied_settings_pass() -> None:
    assert tls_settings_error(settings()) == ""
    chain = leaf().certificate + make_ca("an intermediate").certificate
    assert tls_settings_error(settings(certificate=chain)) == ""


def test_nothing_set_passes() -> None:
    empty = {"certificate": "", "key": "", "acme_email": "", "server_names": []}
    assert tls_settings_error({**empty, "tls_port": 443, "proxy_port": 80}) == ""


def test_key_of_another_certificate_is_refused_without_its_text() -> None:
    message = tls_settings_error(settings(key=other().key))
    assert "is not the private key of proxy_tls_certificate" in message
    for line in key_body(other().key) + key_body(leaf().key):
        assert line not in message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"key": ""}, "proxy_tls_certificate is given without proxy_tls_key"),
        ({"certificate": ""}, "proxy_tls_key is given without proxy_tls_certificate"),
        ({"certificate": "not pem"}, "proxy_tls_certificate is invalid: it must be PEM"),
        ({"tls_port": 80}, "proxy_tls_port 80 is invalid: proxy_port serves plain HTTP"),
        ({"tls_port": 0}, "proxy_tls_port is invalid: it must be a whole number from 1"),
        ({"tls_port": "65536"}, "proxy_tls_port is invalid"),
        ({"tls_port": True}, "proxy_tls_port is invalid"),
        ({"hsts_seconds": -1}, "proxy_hsts_seconds is invalid"),
        ({"hsts_seconds": "1y"}, "proxy_hsts_seconds is invalid"),
        ({"server_names": "app.example.com"}, "proxy_server_names is invalid: it must be a list"),
        ({"server_names": ["bad name"]}, "entry 'bad name' is invalid"),
        ({"server_names": [NAME, NAME.upper()]}, "a name is listed twice"),
        ({"server_names": ["10.0.0.1"]}, "an IP address is not a host name"),
        ({"server_names": [7]}, "every entry must be a host name string"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, Any], expected: str) -> None:
    message = tls_settings_error(settings(**overrides))
    assert expected in message
    for line in key_body(leaf().key):
        assert line not in message


def test_every_problem_is_reported() -> None:
    message = tls_settings_error(settings(key="", tls_port=80, hsts_seconds="x"))
    assert message.count("; ") == 2


@pytest.mark.parametrize(
    "key",
    [
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "garbage\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        42,
    ],
)
def test_key_error_refuses_what_nginx_cannot_load(key: object) -> None:
    message = key_error(key)
    assert message.startswith("proxy_tls_key is invalid")
    assert "AAAA" not in message


def test_key_error_accepts_a_key_and_names_twice_is_refused() -> None:
    assert key_error(leaf().key) == ""
    assert key_error(leaf().key + leaf().key) != ""


@pytest.mark.parametrize(
    "certificate",
    [
        "",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE",
        None,
    ],
)
def test_certificate_error_refuses_what_is_not_a_certificate(certificate: object) -> None:
    assert certificate_error(certificate).startswith("proxy_tls_certificate is invalid")


def test_a_key_in_the_certificate_field_is_refused() -> None:
    assert certificate_error(leaf().certificate + leaf().key) != ""


def test_acme_needs_names_an_email_and_an_https_directory() -> None:
    acme = settings(certificate="", key="", acme_email="ops@example.com")
    assert tls_settings_error(acme) == ""
    assert tls_settings_error({**acme, "acme_directory": "https://acme.test:14000/dir"}) == ""
    assert "proxy_server_names is empty" in tls_settings_error({**acme, "server_names": []})
    assert "wildcard" in tls_settings_error({**acme, "server_names": ["*.example.com"]})
    assert "fully qualified" in tls_settings_error({**acme, "server_names": ["localhost"]})
    assert "proxy_acme_email is invalid" in tls_settings_error({**acme, "acme_email": "ops"})
    http = {**acme, "acme_directory": "http://acme.test/dir"}
    assert "proxy_acme_directory is invalid" in tls_settings_error(http)


def test_supplied_certificate_may_be_a_wildcard_or_a_default_server() -> None:
    assert server_names_error(["*.example.com"]) == ""
    assert server_names_error([]) == ""
    assert server_names_error(None) == ""


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("ops@example.com", True),
        ("a.b+c@sub.example.org", True),
        ("ops@localhost", False),
        ("two@@example.com", False),
        ("sp ace@example.com", False),
        (None, False),
    ],
)
def test_acme_email_error(value: object, ok: bool) -> None:
    assert (acme_email_error(value) == "") is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://acme-v02.api.letsencrypt.org/directory", True),
        ("https://acme.test:14000/dir", True),
        ("http://acme.test/dir", False),
        ("https:///dir", False),
        ("https://acme.test/ dir", False),
        (14000, False),
    ],
)
def test_acme_directory_error(value: object, ok: bool) -> None:
    assert (acme_directory_error(value) == "") is ok


@given(st.integers(min_value=1, max_value=65535))
def test_any_port_but_the_http_one_is_a_tls_port(port: int) -> None:
    assert (tls_port_error(port, 80) == "") is (port != 80)
    assert (tls_port_error(str(port), "80") == "") is (port != 80)


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_hsts_seconds_accepts_whole_seconds(seconds: int) -> None:
    assert hsts_seconds_error(seconds) == ""
    assert hsts_seconds_error(str(seconds)) == ""


@pytest.mark.parametrize(
    ("port", "target"),
    [
        (443, "https://$host$request_uri"),
        ("443", "https://$host$request_uri"),
        (8443, "https://$host:8443$request_uri"),
    ],
)
def test_https_redirect_keeps_a_port_that_is_not_443(port: object, target: str) -> None:
    assert https_redirect(port) == target


def test_https_redirect_needs_a_port() -> None:
    with pytest.raises(ValueError, match="proxy_tls_port"):
        https_redirect("x")


def test_filter_module_exposes_the_filters() -> None:
    filters = FilterModule().filters()
    assert set(filters) == {"tls_mode", "tls_settings_error", "https_redirect"}
