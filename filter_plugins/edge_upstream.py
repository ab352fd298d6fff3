"""The edge proxy's upstream contract: where the file lives, what it says, how it is read back.

One nginx ``upstream`` snippet per app, ``<state dir>/<app_name>.upstream``, included by
the app's site.  edge_proxy's upstream.j2 renders it through ``upstream_text``; a deploy
reads it back through ``serving_release`` to learn which release really serves (even after
a run that was killed before it could record its switch).  The file is::

    # <ansible_managed>
    # release <sha>                       (when the release is known)
    server 127.0.0.1:<port> max_fails=0;

or, before the first deploy, a ``down`` placeholder that nginx accepts and that serves 502::

    # no release deployed yet
    server 127.0.0.1:9 down;

Writer and parser live side by side here so that they cannot drift; every function is pure.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

# Ansible loads filter_plugins/*.py by path, not as a package: the shared checks are
# imported by their bare name from this file's directory.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)

from input_checks import app_name_error, as_int, missing, sha_error, shown  # noqa: E402

UPSTREAM_DIR = "/etc/nginx/edge-proxy"
UPSTREAM_SUFFIX = ".upstream"
RELEASE_MARK = "# release"
NO_RELEASE = "# no release deployed yet\nserver 127.0.0.1:9 down;\n"

_RELEASE_RE = re.compile(r"^#\s*release\s+([0-9a-f]{7,40})\s*$", re.MULTILINE)
_SERVER_RE = re.compile(r"^\s*server\s+\S+:([0-9]{1,5})\b([^;\n]*);", re.MULTILINE)
_HOST_RE = re.compile(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]")


def upstream_path(app_name: object, state_dir: object = UPSTREAM_DIR) -> str:
    """The app's upstream file: ``<state_dir>/<app_name>.upstream``."""
    error = app_name_error(app_name)
    if error:
        raise AnsibleFilterError(error)
    if not isinstance(state_dir, str) or not state_dir.startswith("/"):
        raise AnsibleFilterError(
            f"state_dir {shown(state_dir)} is invalid: it must be an absolute path"
        )
    return f"{state_dir.rstrip('/')}/{app_name}{UPSTREAM_SUFFIX}"


def upstream_text(port: object, release: object = "", host: object = "127.0.0.1") -> str:
    """The upstream file's lines for a release listening on ``host:port``.

    ``port`` 0 means no release yet: the ``down`` placeholder.  ``release`` (the sha) is
    written as ``# release <sha>`` when given; '' or None writes no such line.
    """
    number = as_int(port)
    if number is None or not 0 <= number <= 65535:
        raise AnsibleFilterError(
            f"upstream port {shown(port)} is invalid: it must be a whole number from 0 "
            "(no release yet) to 65535"
        )
    if number == 0:
        return NO_RELEASE
    if not isinstance(host, str) or not _HOST_RE.fullmatch(host):
        raise AnsibleFilterError(f"upstream host {shown(host)} is invalid: give a name or an IP")
    lines = []
    if not missing(release):
        error = sha_error(release, name="release")
        if error:
            raise AnsibleFilterError(error)
        lines.append(f"{RELEASE_MARK} {release}")
    lines.append(f"server {host}:{number} max_fails=0;")
    return "\n".join(lines) + "\n"


def serving_release(upstream: object, slot_ports: Mapping[str, Any]) -> dict[str, Any] | None:
    """What an upstream file (see upstream_text) points at: ``{sha, slot, port}``, or None.

    sha is None in a file written without the ``# release`` line; slot is None when the
    port is no slot's.  None when the text is empty or has no server that is up (before
    the first deploy it has a ``down`` placeholder).
    """
    if not isinstance(upstream, str):
        return None
    server = _SERVER_RE.search(upstream)
    if server is None or "down" in server.group(2).split():
        return None
    port = int(server.group(1))
    slots = {as_int(number): name for name, number in slot_ports.items()}
    release = _RELEASE_RE.search(upstream)
    return {"sha": release.group(1) if release else None, "slot": slots.get(port), "port": port}


class FilterModule:
    """Ansible filter plugin: the upstream file's path, writer and parser."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        functions: tuple[Callable[..., Any], ...] = (upstream_path, upstream_text, serving_release)
        return {function.__name__: function for function in functions}
