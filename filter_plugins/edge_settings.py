"""A deploy applies the app's edge settings when they differ from the host's.

The settings are every input that shapes one app's part of the edge: its nginx site and
maintenance check, its TLS file and the port and names in its edge record (the proxy_*
interface variables and edge_proxy's limits). ``edge_settings_digest`` reduces them to
one sha256 over a canonical JSON; provision.yml and a deploy that applies them write it
into the app's edge record (``settings_digest``, filter_plugins/edge_records.py). A deploy
reads the record with its lock, computes the digest of its own settings on the controller
and, through ``edge_settings_changed``, applies them (edge_proxy's entry point ``site``)
only when the two differ, or when the record names none (a host provisioned by an older
version: applied once, which writes the digest).

The supplied certificate and key enter only through a sha256 of their text: the digest
is in a world-readable file and the run's output, the key never is. The host's own
choices (the app's port block, the front address) are not settings: the record keeps
them. ACME's account e-mail and directory are certbot's, used by provision.yml only.

Every function here is pure.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)

from input_checks import as_int  # noqa: E402
from tls_inputs import TLS_ACME, TLS_OFF, TLS_SUPPLIED, tls_mode  # noqa: E402

# Bumped when the meaning of a setting in the site changes (a deploy then applies it once).
SETTINGS_VERSION = 1
RECORD_KEY = "settings_digest"
# The settings, as edge_proxy's variables name them (without the edge_proxy_ prefix).
SETTING_KEYS = (
    "app_name",
    "port",
    "server_names",
    "tls_port",
    "tls_certificate",
    "tls_key",
    "acme_email",
    "hsts_seconds",
    "health_path",
    "client_max_body_size",
    "connect_timeout",
    "read_timeout",
    "maintenance_retry_after",
    "state_dir",
    "tls_dir",
    "acme_webroot",
)


def _number(settings: Mapping[str, Any], key: str) -> int | str:
    """An int setting as an int ("80" from -e counts as 80), else its text."""
    value = settings[key]
    number = as_int(value)
    return str(value) if number is None else number


def _names(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, Sequence):
        return [str(item) for item in value]
    return []


def _text(value: object) -> str:
    return "" if value is None else str(value)


def canonical_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as they shape the site: ints as ints, TLS settings only while TLS is
    on, the certificate and key as a sha256 of the file they are written to."""
    missing = [key for key in SETTING_KEYS if key not in settings]
    unknown = sorted(key for key in settings if key not in SETTING_KEYS)
    if missing or unknown:
        raise AnsibleFilterError(
            f"edge_settings_digest: missing settings {missing}, unknown settings {unknown}"
        )
    mode = tls_mode(settings["tls_certificate"], settings["acme_email"])
    certificate = None
    if mode == TLS_SUPPLIED:
        # the file's content (tasks/site.yml): the chain, then the key
        pem = (
            f"{_text(settings['tls_certificate']).strip()}\n{_text(settings['tls_key']).strip()}\n"
        )
        certificate = hashlib.sha256(pem.encode()).hexdigest()
    return {
        "version": SETTINGS_VERSION,
        "app_name": _text(settings["app_name"]),
        "port": _number(settings, "port"),
        "server_names": _names(settings["server_names"]),  # in order: the site's
        "tls": mode,
        "tls_port": None if mode == TLS_OFF else _number(settings, "tls_port"),
        "certificate_sha256": certificate,
        "hsts_seconds": 0 if mode == TLS_OFF else _number(settings, "hsts_seconds"),
        "health_path": _text(settings["health_path"]),
        "client_max_body_size": _text(settings["client_max_body_size"]),
        "connect_timeout": _number(settings, "connect_timeout"),
        "read_timeout": _number(settings, "read_timeout"),
        "maintenance_retry_after": _number(settings, "maintenance_retry_after"),
        "state_dir": _text(settings["state_dir"]),
        "tls_dir": _text(settings["tls_dir"]),
        "acme_webroot": _text(settings["acme_webroot"]) if mode == TLS_ACME else None,
    }


def edge_settings_digest(settings: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of the app's edge settings (``SETTING_KEYS``)."""
    text = json.dumps(canonical_settings(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _record(text: object) -> dict[str, Any]:
    if isinstance(text, Mapping):
        return dict(text)
    try:
        parsed = json.loads(_text(text) or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def edge_settings_changed(record_text: object, digest: object) -> bool:
    """Whether a deploy applies the settings: the app's edge record (the file's text, empty
    when there is none) names no digest (an older version wrote it) or another one."""
    recorded = _record(record_text).get(RECORD_KEY)
    return not isinstance(recorded, str) or recorded != _text(digest)


def deploy_acme_error(record: object, tls: object, server_names: object) -> str:
    """Why a deploy cannot apply settings that use ACME ('' when it can): the host must
    already have the ACME certificate for exactly these names (provision obtained it, the
    record says so). A deploy never runs certbot: provision.yml obtains certificates."""
    if tls != TLS_ACME:
        return ""
    old = _record(record)
    wanted = sorted({name.lower() for name in _names(server_names)})
    if old.get("tls") == TLS_ACME and old.get("server_names") == wanted:
        return ""
    return (
        f"the edge settings need an ACME certificate for {', '.join(wanted) or '(no name)'} "
        "that this host does not have yet; a deploy does not obtain certificates: run "
        "playbooks/provision.yml (it obtains it and applies the settings), then deploy. "
        "Nothing was changed"
    )


class FilterModule:
    """Ansible filter plugin: the digest of an app's edge settings and a deploy's decision."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        functions: tuple[Callable[..., Any], ...] = (
            edge_settings_digest,
            edge_settings_changed,
            deploy_acme_error,
        )
        return {function.__name__: function for function in functions}
