"""Ansible filters for three input decisions: which sha forms a deploy can pull, which
daemon.json keys reach the Docker engine's API, and whether app.env must be written.

Plain, pure functions (no I/O, inputs never mutated), each exposed by ``FilterModule`` under
its own name, so they are unit tested without Ansible (tests/unit/test_inputs_extra.py).
Like the validators of input_checks.py, ``*_error`` returns ``''`` for a valid value and
otherwise a one-line message that names the variable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

# The tags .github/workflows/docker-publish.yml pushes for a commit: the full sha and its
# first SHORT_SHA_LENGTH characters (docker/metadata-action's short form, pinned there).
SHORT_SHA_LENGTH = 7
FULL_SHA_LENGTH = 40
PUBLISHED_SHA_FORMS = (
    f"the full {FULL_SHA_LENGTH}-character sha (git rev-parse HEAD) or its first "
    f"{SHORT_SHA_LENGTH} characters (git rev-parse HEAD | cut -c1-{SHORT_SHA_LENGTH}), "
    "the two tags docker-publish.yml pushes"
)

# daemon.json keys that open the engine's API to the network or change how it is secured:
# `hosts` adds listeners (tcp://0.0.0.0:2375 is root on the host for anyone who reaches
# it), the `tls*` keys change or drop the client authentication of such a listener.
API_OPTION_KEYS = ("hosts", "tls", "tlsverify", "tlscacert", "tlscert", "tlskey")
ALLOW_API_OPTIONS = "docker_daemon_allow_api_options"

_HEX_RE = re.compile(r"[0-9a-f]+")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def deploy_sha_error(value: object, name: str = "sha") -> str:
    """'' if a deploy can pull the image tagged value: a full or a 7-character short sha.

    sha_error (input_checks.py) checks the 7-40 hex grammar common to deploy and rollback; a
    deploy pulls ``app_image:sha``, and only these two forms are tags that exist.
    """
    if (
        isinstance(value, str)
        and len(value) in (SHORT_SHA_LENGTH, FULL_SHA_LENGTH)
        and _HEX_RE.fullmatch(value)
    ):
        return ""
    if isinstance(value, str) and _HEX_RE.fullmatch(value):
        shown = f"{value!r} ({len(value)} characters)"
    else:
        shown = "as given"
    return (
        f"{name} {shown} cannot be deployed: no image is tagged with it. "
        f"Deploy takes {PUBLISHED_SHA_FORMS}; a rollback takes any unique prefix of "
        f"{SHORT_SHA_LENGTH} or more characters of a retained release"
    )


def _api_keys(options: Mapping[Any, Any]) -> list[str]:
    return sorted(
        str(key)
        for key in options
        if str(key).lower() in API_OPTION_KEYS or str(key).lower().startswith("tls")
    )


def daemon_options_error(
    options: object, allow_api: object = False, name: str = "docker_daemon_options"
) -> str:
    """'' unless options (daemon.json settings) set a key that exposes or reconfigures the
    engine's API (``hosts``, ``tls*``) while allow_api is not true."""
    if not isinstance(options, Mapping):
        return f"{name} is invalid: it must be a mapping of daemon.json settings"
    found = _api_keys(options)
    if not found or allow_api is True:
        return ""
    return (
        f"{name} sets {', '.join(found)}, which expose or reconfigure the Docker engine's API "
        "(an engine reachable over the network is root on the host for whoever reaches it); "
        f"set {ALLOW_API_OPTIONS}=true to write them anyway"
    )


def env_file_write(checksum: object, content: str | None) -> bool:
    """Whether app.env must be (re)written.

    checksum is the SHA-256 of the host's app.env as read under the lock (``''`` or None:
    no file); content is the env file app_env asks for, or None when app_env was not given
    at all. Not given: the host's file stays as it is (a missing one is created empty
    beforehand, which is then what the host has). Given: written when it differs.
    """
    if content is None:
        return False
    current = str(checksum) if checksum else _EMPTY_SHA256
    return hashlib.sha256(content.encode("utf-8")).hexdigest() != current


class FilterModule:
    """Ansible filter plugin: each function above under its own name."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        functions: tuple[Callable[..., Any], ...] = (
            deploy_sha_error,
            daemon_options_error,
            env_file_write,
        )
        return {function.__name__: function for function in functions}
