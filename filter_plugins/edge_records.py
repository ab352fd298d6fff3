"""Several apps on one host: each app's edge record, its port block, and the collisions refused.

provision.yml writes one record per app beside its switch file,
``<state dir>/<app_name>.json`` (one line of JSON)::

    {"app": "melk-ai", "proxy_port": 80, "tls_port": null, "server_names": [],
     "port_block": [18000, 16], "front_host": "172.17.0.1"}

``tls_port`` is null while TLS is off; ``front_host`` (the Docker bridge's gateway, read at
provision) lets a deploy's switch skip reading it. ``port_block`` is ``[first, count]``: the
ports the app owns on the host. Its *front* (the address nginx forwards to, see
edge_upstream) is the whole block on the Docker bridge's gateway; its two slots publish
``first + 1`` and ``first + 2`` on 127.0.0.1. A new app gets the lowest free block at or
above the first port; an app keeps its block for good (its record names it), so re-
provisioning moves nothing. A host provisioned before records existed has a switch file and
no record: that app is taken to own the default block (``legacy_record``).

Routing is by Host / SNI: apps share ``proxy_port`` (and ``proxy_tls_port``). An app with no
``proxy_server_names`` is the default server of its ports; one with names answers only to
them, and a plain HTTP port where no app is the default answers other names with a catch-all
(``catch_all_ports``; the template writes none for HTTPS). ``edge_conflicts`` lists what
another app on the host already holds; provision.yml refuses any of it before the host is
changed.

Every function here is pure; the records are read on the host by edge_proxy's
``edge_apps`` module.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)

from input_checks import app_name_error, as_int  # noqa: E402

RECORD_SUFFIX = ".json"
DEFAULT_FIRST_PORT = 18000
DEFAULT_BLOCK_SIZE = 16
# slot name -> offset in the app's port block (the block's first port is the front's)
SLOT_OFFSETS = {"blue": 1, "green": 2}
MAX_PORT = 65535

Record = dict[str, Any]


def edge_record(
    app_name: object,
    proxy_port: object,
    tls_port: object,
    server_names: object,
    port_block: object,
) -> Record:
    """The record provision writes for an app (see the module docstring)."""
    error = app_name_error(app_name)
    if error:
        raise AnsibleFilterError(error)
    block = _block(port_block)
    if block is None:
        raise AnsibleFilterError(f"port_block {port_block!r} is invalid: give [first port, count]")
    return {
        "app": str(app_name),
        "proxy_port": as_int(proxy_port),
        "tls_port": None if tls_port in (None, "", 0, False) else as_int(tls_port),
        "server_names": sorted({str(name).lower() for name in _names(server_names)}),
        "port_block": list(block),
    }


def legacy_record(app_name: str, first: int = DEFAULT_FIRST_PORT) -> Record:
    """An app with a switch file and no record (provisioned before records existed): it
    owns the default block; its ports and names are unknown, so it is taken to be the
    default server of port 80."""
    return edge_record(app_name, 80, None, [], [first, DEFAULT_BLOCK_SIZE])


def host_apps(records: Mapping[str, Record], unrecorded: Sequence[str]) -> dict[str, Record]:
    """The apps on a host, by name: its records, and a legacy record for each app with a
    switch file and no record (edge_apps module: ``records``, ``unrecorded``)."""
    apps = {name: legacy_record(name) for name in unrecorded if not app_name_error(name)}
    apps.update({name: dict(record) for name, record in records.items()})
    return apps


def _names(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, Sequence):
        return [str(item) for item in value if str(item)]
    return []


def _block(value: object) -> tuple[int, int] | None:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        return None
    first, count = as_int(value[0]), as_int(value[1])
    if first is None or count is None or count < 3 or first < 1 or first + count - 1 > MAX_PORT:
        return None
    return first, count


def _others(app_name: object, apps: Mapping[str, Record]) -> list[Record]:
    return [record for name, record in sorted(apps.items()) if name != app_name]


def _range(record: Mapping[str, Any]) -> range:
    block = _block(record.get("port_block"))
    return range(0) if block is None else range(block[0], block[0] + block[1])


def port_block(
    app_name: object,
    apps: Mapping[str, Record],
    first: object = DEFAULT_FIRST_PORT,
    size: object = DEFAULT_BLOCK_SIZE,
) -> list[int]:
    """The app's ``[first, count]``: the block its record names, or else the lowest block of
    ``size`` ports at or above ``first`` that no other app's block overlaps."""
    own = _block((apps.get(str(app_name)) or {}).get("port_block"))
    if own is not None:
        return list(own)
    start, count = as_int(first), as_int(size)
    if start is None or count is None or _block([start, count]) is None:
        raise AnsibleFilterError(f"the front ports ({first!r}, {size!r}) are invalid")
    taken = [_range(record) for record in _others(app_name, apps)]
    candidate = start
    while candidate + count - 1 <= MAX_PORT:
        clash = [r for r in taken if r and candidate < r.stop and r.start < candidate + count]
        if not clash:
            return [candidate, count]
        candidate = max(r.stop for r in clash)
    raise AnsibleFilterError(f"no free block of {count} ports above {start} on this host")


def slot_ports(block: object) -> dict[str, int]:
    """The slots' host ports in a ``[first, count]`` block: ``{blue: first+1, green: first+2}``."""
    parsed = _block(block)
    if parsed is None:
        raise AnsibleFilterError(f"port_block {block!r} is invalid: give [first port, count]")
    return {slot: parsed[0] + offset for slot, offset in SLOT_OFFSETS.items()}


def _listens(record: Mapping[str, Any]) -> dict[int, str]:
    """port -> 'plain' or 'tls' for the ports an app's site listens on."""
    ports: dict[int, str] = {}
    if isinstance(record.get("proxy_port"), int):
        ports[record["proxy_port"]] = "plain"
    if isinstance(record.get("tls_port"), int):
        ports[record["tls_port"]] = "tls"
    return ports


def edge_conflicts(record: Mapping[str, Any], apps: Mapping[str, Record]) -> list[str]:
    """What ``record`` (an app's wanted record) would take from another app on the host:
    one message per collision, empty when it fits."""
    errors: list[str] = []
    mine = _listens(record)
    names = set(record.get("server_names") or [])
    block = _range(record)
    for port in mine:
        if port in block:
            errors.append(f"port {port} lies in this app's own port block {_shown(block)}")
    for other in _others(record.get("app"), apps):
        app = other.get("app")
        theirs = _listens(other)
        for port, kind in mine.items():
            if port in theirs and theirs[port] != kind:
                errors.append(
                    f"port {port}: app {app} serves {theirs[port]} HTTP on it, this app "
                    f"{kind}; one port cannot serve both"
                )
            elif port in theirs:
                other_names = set(other.get("server_names") or [])
                if not names and not other_names:
                    errors.append(
                        f"port {port}: app {app} is already its default server (it has no "
                        "proxy_server_names); give this app proxy_server_names"
                    )
                for shared in sorted(names & other_names):
                    errors.append(f"server name {shared} on port {port} is already app {app}'s")
            if port in _range(other):
                errors.append(f"port {port} lies in app {app}'s port block {_shown(_range(other))}")
        overlap = set(block) & set(_range(other))
        if overlap:
            errors.append(
                f"port block {_shown(block)} overlaps app {app}'s {_shown(_range(other))}"
            )
        for port in theirs:
            if port in block:
                errors.append(f"port block {_shown(block)} holds app {app}'s port {port}")
    return errors


def _shown(ports: range) -> str:
    return f"{ports.start}-{ports.stop - 1}" if ports else "(none)"


def catch_all_ports(apps: Mapping[str, Record]) -> dict[str, list[int]]:
    """Ports apps listen on where no app is the default server (every app there has
    proxy_server_names): ``{plain: [...], tls: [...]}``; nginx answers other names there
    from a catch-all (404) instead of the first app; site templates write it for plain HTTP only."""
    kinds: dict[int, str] = {}
    defaulted: set[int] = set()
    for record in apps.values():
        for port, kind in _listens(record).items():
            kinds.setdefault(port, kind)
            if not record.get("server_names"):
                defaulted.add(port)
    result: dict[str, list[int]] = {"plain": [], "tls": []}
    for port in sorted(kinds):
        if port not in defaulted:
            result[kinds[port]].append(port)
    return result


class FilterModule:
    """Ansible filter plugin: edge records, port blocks and collisions of apps on a host."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        functions: tuple[Callable[..., Any], ...] = (
            edge_record,
            host_apps,
            port_block,
            slot_ports,
            edge_conflicts,
            catch_all_ports,
        )
        return {function.__name__: function for function in functions}
