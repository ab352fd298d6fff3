"""The edge's switch contract: where the file lives, what it says, how it is read back.

nginx never reloads on a deploy: it forwards every app's traffic to a fixed local
address (the *front*, e.g. the Docker bridge's gateway on port 18000), and an nftables
rule in the app's own chain (``app-<app_name>``) rewrites connections to that address
towards the live release's container (``dnat``).  Switching is one nftables transaction
that replaces the rule: connections already open keep their old destination (conntrack),
so in-flight requests finish on the old release, and no client connection to nginx is
touched.  The rule goes straight to the container's address, not through a published
port, so a restart of the Docker engine (live-restore) does not interrupt it.

One file per app, ``<state dir>/<app_name>.upstream``: an ``nft -f`` script that
edge_proxy's upstream.j2 renders through ``upstream_text`` and a deploy reads back through
``serving_release`` to learn which release really serves (even after a run that was killed
before it could record its switch)::

    # <ansible_managed>
    # release <sha>                  (when the release is known)
    # slot <slot>                    (the container is <app_name>-<slot>)
    add table ip edge_proxy
    add chain ip edge_proxy app-<app> { type nat hook output priority -110; policy accept; }
    flush chain ip edge_proxy app-<app>
    add rule ip edge_proxy app-<app> ip daddr <front ip> tcp dport <ports> dnat to <ip>:<port>

Before the first deploy the chain is left empty (``# no release deployed yet``): the front
refuses connections and nginx answers 502.  The boot unit (edge-proxy-restore) re-applies
every file after the engine has started the releases, with the address of the slot's
container, which may change when the host restarts.

Writer and parser live side by side here so that they cannot drift; every function is pure.
"""

from __future__ import annotations

import ipaddress
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
TABLE = "ip edge_proxy"
# Before Docker's own nat rules (iptables-nft's OUTPUT chain, priority -100).
PRIORITY = -110
CHAIN_PREFIX = "app-"
RELEASE_MARK = "# release"
SLOT_MARK = "# slot"
NO_RELEASE = "# no release deployed yet"

_RELEASE_RE = re.compile(r"^#[ \t]*release[ \t]+([0-9a-f]{7,40})[ \t]*$", re.MULTILINE)
_SLOT_RE = re.compile(r"^#[ \t]*slot[ \t]+([a-z]+)[ \t]*$", re.MULTILINE)
_DNAT_RE = re.compile(r"^add rule .* dnat to ([0-9.]+):([0-9]{1,5})\s*$", re.MULTILINE)
_SLOT_NAME_RE = re.compile(r"[a-z]{1,16}")


def upstream_path(app_name: object, state_dir: object = UPSTREAM_DIR) -> str:
    """The app's switch file: ``<state_dir>/<app_name>.upstream``."""
    error = app_name_error(app_name)
    if error:
        raise AnsibleFilterError(error)
    if not isinstance(state_dir, str) or not state_dir.startswith("/"):
        raise AnsibleFilterError(
            f"state_dir {shown(state_dir)} is invalid: it must be an absolute path"
        )
    return f"{state_dir.rstrip('/')}/{app_name}{UPSTREAM_SUFFIX}"


def edge_record_path(app_name: object, state_dir: object = UPSTREAM_DIR) -> str:
    """The app's edge record beside its switch file: ``<state_dir>/<app_name>.json``
    (filter_plugins/edge_records.py says what it holds)."""
    return upstream_path(app_name, state_dir).removesuffix(UPSTREAM_SUFFIX) + ".json"


def chain_name(app_name: str) -> str:
    """The app's nftables chain: ``app-<app_name>`` (nft refuses chain names that start
    with a digit or are keywords, such as ``9`` or ``accept``, which app_name allows)."""
    return f"{CHAIN_PREFIX}{app_name}"


def address(value: object, name: str) -> tuple[str, int]:
    """``(ip, port)`` of an ``IPv4:port`` string; AnsibleFilterError naming ``name`` if not."""
    text = value if isinstance(value, str) else ""
    host, _, port = text.rpartition(":")
    number = as_int(port)
    try:
        ip = str(ipaddress.IPv4Address(host))
    except ValueError:
        ip = ""
    if not ip or number is None or not 1 <= number <= 65535:
        raise AnsibleFilterError(
            f"{name} {shown(value)} is invalid: "
            "give an IPv4 address and a port, like 172.17.0.1:18000"
        )
    return ip, number


def upstream_text(
    app_name: object,
    front: object,
    target: object = "",
    release: object = "",
    slot: object = "",
    front_ports: object = 1,
) -> str:
    """The switch file's lines: connections to ``front`` go to ``target`` (both ``ip:port``).

    ``front_ports`` consecutive ports from front's port are forwarded alike (nginx spreads
    its connections over them: each port multiplies the new connections a second the host
    can open towards the app, about 470 per port with 28k ephemeral ports held 60 s in
    TIME_WAIT).  ``target`` '' means no release yet: the chain stays empty.  ``release``
    (the sha) and ``slot`` are written as ``# release <sha>`` / ``# slot <slot>`` when given.
    """
    error = app_name_error(app_name)
    if error:
        raise AnsibleFilterError(error)
    front_ip, front_port = address(front, "front address")
    count = as_int(front_ports)
    if count is None or not 1 <= count <= 256 or front_port + count - 1 > 65535:
        raise AnsibleFilterError(
            f"front_ports {shown(front_ports)} is invalid: give 1 to 256 ports that fit "
            f"above {front_port}"
        )
    dport = str(front_port) if count == 1 else f"{front_port}-{front_port + count - 1}"
    chain = f"{TABLE} {chain_name(str(app_name))}"
    head = [
        f"add table {TABLE}",
        f"add chain {chain} {{ type nat hook output priority {PRIORITY}; policy accept; }}",
        f"flush chain {chain}",
    ]
    if missing(target):
        return "\n".join([NO_RELEASE, *head]) + "\n"
    target_ip, target_port = address(target, "target address")
    lines = []
    if not missing(release):
        error = sha_error(release, name="release")
        if error:
            raise AnsibleFilterError(error)
        lines.append(f"{RELEASE_MARK} {release}")
    if not missing(slot):
        if not isinstance(slot, str) or not _SLOT_NAME_RE.fullmatch(slot):
            raise AnsibleFilterError(f"slot {shown(slot)} is invalid: give a slot name like blue")
        lines.append(f"{SLOT_MARK} {slot}")
    rule = (
        f"add rule {chain} ip daddr {front_ip} tcp dport {dport} dnat to {target_ip}:{target_port}"
    )
    return "\n".join([*lines, *head, rule]) + "\n"


def serving_release(upstream: object, slot_ports: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a switch file (see upstream_text) points at: ``{sha, slot, port}``, or None.

    sha is None in a file written without the ``# release`` line; slot (and the slot's
    host port) None when the file names no slot of ``slot_ports``.  None when the text is
    empty or forwards nowhere (before the first deploy).
    """
    if not isinstance(upstream, str) or _DNAT_RE.search(upstream) is None:
        return None
    slot_line = _SLOT_RE.search(upstream)
    slot = slot_line.group(1) if slot_line and slot_line.group(1) in slot_ports else None
    release = _RELEASE_RE.search(upstream)
    return {
        "sha": release.group(1) if release else None,
        "slot": slot,
        "port": as_int(slot_ports[slot]) if slot else None,
    }


class FilterModule:
    """Ansible filter plugin: the switch file's path, writer and parser."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        functions: tuple[Callable[..., Any], ...] = (
            upstream_path,
            edge_record_path,
            upstream_text,
            serving_release,
        )
        return {function.__name__: function for function in functions}
