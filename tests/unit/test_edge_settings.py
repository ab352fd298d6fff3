"""Unit tests for filter_plugins/edge_settings.py: the digest of an app's edge settings, the
deploy's decision to apply them (equal / differ / no digest), and ACME in a deploy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import edge_settings
import pytest
import yaml
from ansible.errors import AnsibleFilterError
from edge_settings import (
    SETTING_KEYS,
    canonical_settings,
    deploy_acme_error,
    edge_settings_changed,
    edge_settings_digest,
)
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
CERT = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIEsecretkeytext\n-----END PRIVATE KEY-----"


def settings(**changes: Any) -> dict[str, Any]:
    """A supplied-certificate app (TLS on), as edge_proxy's defaults give them."""
    base: dict[str, Any] = {
        "app_name": "shop",
        "port": 80,
        "server_names": ["a.test"],
        "tls_port": 443,
        "tls_certificate": CERT,
        "tls_key": KEY,
        "acme_email": "",
        "hsts_seconds": 0,
        "health_path": "/health",
        "client_max_body_size": "10m",
        "connect_timeout": 5,
        "read_timeout": 60,
        "maintenance_retry_after": 60,
        "state_dir": "/etc/nginx/edge-proxy",
        "tls_dir": "/etc/nginx/tls",
        "acme_webroot": "/var/lib/edge-proxy/acme",
    }
    base.update(changes)
    return base


ACME = {"tls_certificate": "", "tls_key": "", "acme_email": "ops@example.com"}
PLAIN = {"tls_certificate": "", "tls_key": "", "acme_email": ""}

# One setting changed at a time (from a base where it shapes the site): the digest changes.
CHANGES = [
    ({}, "app_name", "admin"),
    ({}, "port", 8080),
    ({}, "server_names", ["a.test", "b.test"]),
    ({}, "server_names", ["A.test"]),
    ({}, "tls_port", 8443),
    ({}, "tls_certificate", CERT.replace("cert", "other")),
    ({}, "tls_key", KEY.replace("secret", "other")),
    ({}, "tls_certificate", ""),  # supplied -> off
    ({}, "hsts_seconds", 31536000),
    ({}, "health_path", "/healthz"),
    ({}, "client_max_body_size", "1m"),
    ({}, "connect_timeout", 6),
    ({}, "read_timeout", 61),
    ({}, "maintenance_retry_after", 30),
    ({}, "state_dir", "/srv/edge"),
    ({}, "tls_dir", "/srv/tls"),
    (ACME, "acme_webroot", "/srv/acme"),
    (ACME, "acme_email", ""),  # acme -> off
    (PLAIN, "acme_email", "ops@example.com"),  # off -> acme
    (PLAIN, "tls_certificate", CERT),  # off -> supplied
]
# While TLS is off, the TLS-only settings shape nothing: the digest stays.
UNCHANGED = [
    ({}, "acme_email", "ops@example.com"),  # a supplied certificate wins over ACME
    (PLAIN, "tls_port", 8443),
    (PLAIN, "hsts_seconds", 300),
    (PLAIN, "tls_key", KEY),
    (PLAIN, "acme_webroot", "/srv/acme"),
    ({}, "acme_webroot", "/srv/acme"),
    ({}, "port", "80"),  # -e passes text
    ({}, "read_timeout", "60"),
]


@pytest.mark.parametrize(("base", "key", "value"), CHANGES, ids=str)
def test_the_digest_changes_when_one_setting_changes(
    base: dict[str, Any], key: str, value: object
) -> None:
    before = settings(**base)
    after = settings(**{**base, key: value})
    assert edge_settings_digest(after) != edge_settings_digest(before)


@pytest.mark.parametrize(("base", "key", "value"), UNCHANGED, ids=str)
def test_the_digest_stays_when_nothing_that_shapes_the_site_changes(
    base: dict[str, Any], key: str, value: object
) -> None:
    assert edge_settings_digest(settings(**{**base, key: value})) == edge_settings_digest(
        settings(**base)
    )


def test_every_setting_is_covered_by_a_change() -> None:
    assert {key for _, key, _ in CHANGES} == set(SETTING_KEYS)


@given(st.sampled_from(SETTING_KEYS))
def test_a_missing_setting_is_refused(key: str) -> None:
    incomplete = settings()
    del incomplete[key]
    with pytest.raises(AnsibleFilterError, match=key):
        edge_settings_digest(incomplete)


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="proxy_port"):
        edge_settings_digest(settings(proxy_port=80))


key_body = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", min_size=16
)


@given(key_body, st.sampled_from([80, "80"]), st.lists(st.sampled_from(["a.test", "b.test"])))
def test_the_digest_is_stable_and_never_holds_the_key(
    body: str, port: object, names: list[str]
) -> None:
    key = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"
    given_settings = settings(tls_key=key, port=port, server_names=names)
    digest = edge_settings_digest(given_settings)
    assert digest == edge_settings_digest(dict(reversed(list(given_settings.items()))))
    assert digest == edge_settings_digest(settings(tls_key=key, port=80, server_names=names))
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    # what a record could ever hold: the digest; the canonical form has a hash, never the key
    canonical = json.dumps(canonical_settings(given_settings))
    assert body not in canonical
    record = json.dumps({"app": "shop", "settings_digest": digest})
    assert body not in record


@given(key_body)
def test_the_key_changes_the_digest_through_its_hash(body: str) -> None:
    key = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"
    assert edge_settings_digest(settings(tls_key=key)) != edge_settings_digest(
        settings(tls_key=key + "A")
    )


# --------------------------------------------------------------------------- the decision

DIGEST = edge_settings_digest(settings())


@pytest.mark.parametrize(
    ("record", "changed"),
    [
        (json.dumps({"app": "shop", "settings_digest": DIGEST}), False),  # equal
        ({"app": "shop", "settings_digest": DIGEST}, False),
        (json.dumps({"app": "shop", "settings_digest": "0" * 64}), True),  # differ
        (json.dumps({"app": "shop", "port_block": [18000, 16]}), True),  # no digest: older version
        (json.dumps({"app": "shop", "settings_digest": None}), True),
        ("", True),  # no record (a host provisioned before records)
        ("{not json", True),
        ("[]", True),
    ],
    ids=["equal", "equal-dict", "differ", "no-digest", "null-digest", "no-record", "bad", "list"],
)
def test_a_deploy_applies_the_settings_only_when_they_differ(record: object, changed: bool) -> None:
    assert edge_settings_changed(record, DIGEST) is changed


# --------------------------------------------------------------------------- ACME in a deploy


@pytest.mark.parametrize(
    ("record", "tls", "names", "refused"),
    [
        ({}, "off", ["a.test"], False),
        ({}, "supplied", ["a.test"], False),
        (
            {"tls": "acme", "server_names": ["a.test", "b.test"]},
            "acme",
            ["B.test", "a.test"],
            False,
        ),
        (
            {"tls": "acme", "server_names": ["a.test"]},
            "acme",
            ["a.test", "b.test"],
            True,
        ),  # new name
        (
            {"tls": "supplied", "server_names": ["a.test"]},
            "acme",
            ["a.test"],
            True,
        ),  # ACME newly on
        ({"server_names": ["a.test"]}, "acme", ["a.test"], True),  # an older record
        ({}, "acme", ["a.test"], True),
    ],
)
def test_a_deploy_refuses_acme_settings_whose_certificate_the_host_lacks(
    record: dict[str, Any], tls: str, names: list[str], refused: bool
) -> None:
    error = deploy_acme_error(record, tls, names)
    assert bool(error) is refused
    if refused:
        assert "provision.yml" in error and "Nothing was changed" in error


# --------------------------------------------------------------------------- the role's default


def test_the_roles_digest_variable_passes_every_setting() -> None:
    defaults = yaml.safe_load((ROOT / "roles/edge_proxy/defaults/main.yml").read_text())
    expression = defaults["edge_proxy_settings_digest"]
    passed = re.findall(r"'(\w+)': edge_proxy_(\w+)", expression)
    assert [key for key, _ in passed] == [var for _, var in passed]
    assert {key for key, _ in passed} == set(SETTING_KEYS)
    assert "edge_settings_digest" in edge_settings.FilterModule().filters()
