"""Ansible filters for the release history a host keeps, its blue/green slots and fleet outcome.

Release state is the JSON document kept on each host::

    {"version": 1,
     "current": {"sha", "slot", "image", "at", "by"} or null,
     "history": [entry, ...]}          # newest first

where an entry is ``{"sha", "image", "slot", "kind": "deploy"|"rollback",
"status": "succeeded"|"failed", "at", "by", "message", "from_sha"}``.

Every public function here is a plain, pure function (no I/O, inputs never mutated); the
filters are exposed by ``FilterModule`` under their own names.  ``release_state`` (the
normalised, validated state) is what every filter here starts from; it is not a filter.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

# Ansible loads filter_plugins/*.py by path, not as a package: the shared checks are
# imported by their bare name from this file's directory.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)

from input_checks import (  # noqa: E402
    SHA_RE,
    SHA_RULE,
    count_option,
    image_error,
    missing,
    one_line,
    sha_error,
    shown,
    type_name,
)

State = dict[str, Any]
Entry = dict[str, Any]
Release = dict[str, Any]

STATE_VERSION = 1
SLOTS = ("blue", "green")
KINDS = ("deploy", "rollback")
STATUSES = ("succeeded", "failed")
ENTRY_KEYS = ("sha", "image", "slot", "kind", "status", "at", "by", "message", "from_sha")
CURRENT_KEYS = ("sha", "slot", "image", "at", "by")
RELEASE_KEYS = ("sha", "image", "slot", "at", "by")
MAX_MESSAGE = 160


class _StateError(ValueError):
    """A problem inside a release state or entry; wrapped into AnsibleFilterError."""


# --------------------------------------------------------------------------- slots


def other_slot(slot: str | None) -> str:
    """The slot to deploy into next: 'blue' <-> 'green'; 'blue' when nothing is live."""
    if missing(slot):
        return "blue"
    if slot == "blue":
        return "green"
    if slot == "green":
        return "blue"
    raise AnsibleFilterError(f"slot {shown(slot)} is invalid: it must be 'blue' or 'green'")


_SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")


_SLOT_LINE_RE = re.compile(
    r"^(blue|green) (true|false) ([0-9]{1,9}) ([0-9a-f]{7,40})"
    r"(?: ([0-9]{1,3}(?:\.[0-9]{1,3}){3})?)?"  # the address, when there is one
    r"(?: (-1|[0-9]{1,3}))?$"  # the health probe's status (deploy_lock's probe), when sent
)


def slot_containers(found: object) -> dict[str, dict[str, Any]]:
    """What runs in each slot: ``{slot: {running, restarts, sha, ip, health}}``.

    From the lines ``docker inspect --format '<slot label> <running> <restarts> <sha label>
    [<address>]'`` prints for ``<app>-blue <app>-green`` (module_utils/melk_docker's
    SLOT_FORMAT; a container that does not exist prints none; ip is '' without an address),
    with the status of one health probe appended by deploy_lock (-1: no answer; health is
    None when none was sent), or from community.docker.docker_host_info's containers (labels
    and state at the top, no restart count).  Containers without our slot and sha labels are
    ignored."""
    slots: dict[str, dict[str, Any]] = {}
    if isinstance(found, str):
        for line in found.splitlines():
            match = _SLOT_LINE_RE.match(line.strip())
            if match:
                slot, running, restarts, sha, ip, health = match.groups()
                slots[slot] = {
                    "running": running == "true",
                    "restarts": int(restarts),
                    "sha": sha,
                    "ip": ip or "",
                    "health": None if health is None else int(health),
                }
        return slots
    if not isinstance(found, list):
        return slots
    for item in found:
        if not isinstance(item, Mapping):
            continue
        labels = item.get("Labels") or {}
        slot, sha = labels.get("io.melk.slot"), labels.get("io.melk.sha")
        if slot in SLOTS and isinstance(sha, str) and _SHA_RE.match(sha):
            slots[slot] = {
                "running": item.get("State") == "running",
                "restarts": 0,
                "sha": sha,
                "ip": "",
                "health": None,
            }
    return slots


def standby_release(slots: object, current_slot: object) -> dict[str, Any] | None:
    """The standby: ``{slot, sha, restarts}`` of the release running in the slot that does not
    serve, or None (no container there, or it is stopped)."""
    if not isinstance(slots, Mapping) or current_slot not in SLOTS:
        return None
    slot = other_slot(str(current_slot))
    found = slots.get(slot)
    if not isinstance(found, Mapping) or not found.get("running"):
        return None
    return {"slot": slot, "sha": found.get("sha"), "restarts": found.get("restarts", 0)}


def standby_ready(slots: object, current_slot: object, sha: object) -> bool:
    """Whether a rollback to ``sha`` can be a switch: the standby is that release, running,
    never restarted since it started, and its health probe (sent under the deploy lock)
    answered 2xx. Otherwise the rollback takes the full path: start, gate, switch."""
    standby = standby_release(slots, current_slot)
    if standby is None or standby["sha"] != sha or standby["restarts"] != 0:
        return False
    health = slots[standby["slot"]].get("health")  # type: ignore[index]
    return isinstance(health, int) and 200 <= health <= 299


# --------------------------------------------------------------------------- release state


def _empty_state() -> State:
    return {"version": STATE_VERSION, "current": None, "history": []}


def _text_field(data: Mapping[str, Any], where: str, key: str, default: str | None) -> str:
    """A string field; default None means required and non-empty."""
    value = data.get(key)
    if isinstance(value, datetime):
        value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if value is None or value == "":
        if default is None:
            raise _StateError(f"{where}.{key} is missing")
        return default
    if not isinstance(value, str):
        raise _StateError(f"{where}.{key} must be a string, not {type_name(value)}")
    return str(value)


def _sha_field(
    data: Mapping[str, Any], where: str, key: str, *, optional: bool = False
) -> str | None:
    value = data.get(key)
    if optional and missing(value):
        return None
    if not isinstance(value, str) or not SHA_RE.fullmatch(value):
        raise _StateError(f"{where}.{key} {shown(value)} is invalid: {SHA_RULE}")
    return str(value)


def _choice_field(
    data: Mapping[str, Any],
    where: str,
    key: str,
    choices: tuple[str, ...],
    *,
    optional: bool = False,
) -> str | None:
    value = data.get(key)
    if optional and missing(value):
        return None
    if not isinstance(value, str) or value not in choices:
        allowed = " or ".join(repr(choice) for choice in choices)
        raise _StateError(f"{where}.{key} {shown(value)} is invalid: it must be {allowed}")
    return str(value)


def _extras(data: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """Unknown keys are kept (deep-copied) so that added fields survive a round trip."""
    return {key: copy.deepcopy(value) for key, value in data.items() if key not in known}


def _normalise_entry(raw: object, where: str) -> Entry:
    if not isinstance(raw, Mapping):
        raise _StateError(f"{where} must be a mapping, not {type_name(raw)}")
    status = _choice_field(raw, where, "status", STATUSES)
    entry: Entry = {
        "sha": _sha_field(raw, where, "sha"),
        "image": _text_field(raw, where, "image", default=None),
        # a deploy can fail before its slot is known; a success always has one
        "slot": _choice_field(raw, where, "slot", SLOTS, optional=status == "failed"),
        "kind": _choice_field(raw, where, "kind", KINDS),
        "status": status,
        "at": _text_field(raw, where, "at", default=""),
        "by": _text_field(raw, where, "by", default=""),
        "message": _text_field(raw, where, "message", default=""),
        "from_sha": _sha_field(raw, where, "from_sha", optional=True),
    }
    entry.update(_extras(raw, ENTRY_KEYS))
    return entry


def _normalise_current(raw: object) -> dict[str, Any] | None:
    if raw is None or (isinstance(raw, Mapping) and not raw):
        return None
    if not isinstance(raw, Mapping):
        raise _StateError(f"current must be a mapping or null, not {type_name(raw)}")
    current: dict[str, Any] = {
        "sha": _sha_field(raw, "current", "sha"),
        "slot": _choice_field(raw, "current", "slot", SLOTS),
        "image": _text_field(raw, "current", "image", default=None),
        "at": _text_field(raw, "current", "at", default=""),
        "by": _text_field(raw, "current", "by", default=""),
    }
    current.update(_extras(raw, CURRENT_KEYS))
    return current


def _normalise_state(data: Mapping[str, Any]) -> State:
    version = data.get("version", STATE_VERSION)
    if isinstance(version, bool) or version != STATE_VERSION:
        raise _StateError(
            f"version {shown(version)} is not supported (this playbook reads version "
            f"{STATE_VERSION})"
        )
    history = data.get("history")
    if history is None:
        history = []
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise _StateError(f"history must be a list, not {type_name(history)}")
    state: State = {
        "version": STATE_VERSION,
        "current": _normalise_current(data.get("current")),
        "history": [_normalise_entry(item, f"history[{i}]") for i, item in enumerate(history)],
    }
    state.update(_extras(data, ("version", "current", "history")))
    return state


def release_state(raw: object) -> State:
    """Normalise the release state read from a host into a new, validated dict.

    None, '' (or only whitespace) and {} give the empty state
    ``{"version": 1, "current": None, "history": []}``.  A string is parsed as JSON; a mapping
    is validated.  Missing keys are filled (``at``/``by``/``message`` with '', ``from_sha``
    with None, ``current`` with None, ``history`` with []); unknown keys are kept.
    Raises AnsibleFilterError when the document is corrupt.
    """
    hint = "repair the state file or move it aside (its history is then lost)"
    data: object = raw
    if isinstance(raw, (bytes, bytearray)):
        try:
            data = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise AnsibleFilterError(
                f"release state is corrupt: it is not UTF-8 text; {hint}"
            ) from None
    if data is None:
        return _empty_state()
    if isinstance(data, str):
        if not data.strip():
            return _empty_state()
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise AnsibleFilterError(
                f"release state is corrupt: it is not valid JSON ({exc.msg} at line "
                f"{exc.lineno} column {exc.colno}); {hint}"
            ) from None
    if not isinstance(data, Mapping):
        raise AnsibleFilterError(
            f"release state is corrupt: it must be a JSON object, not {type_name(data)}; {hint}"
        )
    try:
        return _normalise_state(data)
    except _StateError as exc:
        raise AnsibleFilterError(f"release state is corrupt: {exc}; {hint}") from None


def _trim_history(history: list[Entry], keep: int) -> list[Entry]:
    seen: set[str] = set()
    kept: list[Entry] = []
    for entry in history:
        if entry["status"] == "succeeded" and entry["sha"] not in seen:
            seen.add(entry["sha"])
            if len(seen) > keep:
                break
        kept.append(entry)
    return kept[: max(keep * 4, 20)]


def record_release(state: object, entry: Mapping[str, Any], keep: int = 5) -> State:
    """A new state with entry (a deploy or rollback outcome) recorded; inputs are not changed.

    The entry is validated and prepended to history (newest first).  When its status is
    'succeeded', current becomes its ``{sha, slot, image, at, by}``; a failed entry leaves
    current as it was.

    History is then trimmed by this exact rule: walking from the newest entry, entries are
    kept while the number of distinct shas of succeeded entries seen so far (counting the
    entry being looked at) is at most ``keep``; the first entry that would bring in the
    ``keep + 1``-th distinct succeeded sha and everything older are dropped.  Failed entries
    in between are kept.  Finally, history is cut to at most ``max(keep * 4, 20)`` entries.
    """
    keep_count = count_option(keep, "keep", minimum=1)
    new_state = release_state(state)
    try:
        new_entry = _normalise_entry(entry, "entry")
    except _StateError as exc:
        raise AnsibleFilterError(f"release entry is invalid: {exc}") from None
    if new_entry["status"] == "succeeded":
        new_state["current"] = {key: new_entry[key] for key in CURRENT_KEYS}
    new_state["history"] = _trim_history([new_entry, *new_state["history"]], keep_count)
    return new_state


def reconcile_state(state: object, serving: Mapping[str, Any] | None, image: str) -> State:
    """The state with ``current`` set to what the proxy serves, when the history disagrees.

    A run killed after its switch leaves the proxy on a release the history does not
    record as current; deploying next into "the other slot" would then replace the
    release that serves.  The proxy is the truth for traffic: when it names a release
    (sha and slot, see edge_upstream.serving_release) other than ``current``,
    ``current`` becomes that release (image ``image:sha``) with ``reconciled: true``.
    Otherwise the state is returned normalised and unchanged.
    """
    new_state = release_state(state)
    if not serving or not serving.get("sha") or serving.get("slot") not in SLOTS:
        return new_state
    current = new_state["current"]
    if current is not None and (current["sha"], current["slot"]) == (
        serving["sha"],
        serving["slot"],
    ):
        return new_state
    new_state["current"] = {
        "sha": str(serving["sha"]),
        "slot": str(serving["slot"]),
        "image": f"{image}:{serving['sha']}",
        "at": "",
        "by": "",
        "reconciled": True,
    }
    return new_state


def _release_item(source: Mapping[str, Any]) -> Release:
    return {key: source[key] for key in RELEASE_KEYS}


def _retained(state: State, keep: int) -> list[Release]:
    items: list[Release] = []
    seen: set[str] = set()
    current = state["current"]
    if current is not None:
        items.append(_release_item(current))
        seen.add(current["sha"])
    for entry in state["history"]:
        if len(items) >= keep:
            break
        if entry["status"] == "succeeded" and entry["sha"] not in seen:
            seen.add(entry["sha"])
            items.append(_release_item(entry))
    return items


def retained_releases(state: object, keep: int = 5) -> list[Release]:
    """The releases kept for rollback: distinct succeeded shas, newest first, at most keep.

    Each item is ``{"sha", "image", "slot", "at", "by"}`` taken from the sha's newest
    succeeded entry.  The current release, when there is one, is always first (its values
    come from ``current``).
    """
    return _retained(release_state(state), count_option(keep, "keep", minimum=1))


def _current_sha(state: State) -> str | None:
    current = state["current"]
    return None if current is None else str(current["sha"])


def _previous(retained: list[Release], current_sha: str | None) -> Release | None:
    for item in retained:
        if item["sha"] != current_sha:
            return item
    return None


def previous_release(state: object) -> Release | None:
    """The release that served before the current one, or None.

    This is the first retained release (see retained_releases) whose sha differs from the
    current sha, i.e. the second item when there is a current release.  Because a rollback
    is recorded as a new succeeded entry, rolling back twice returns to where it started:
    deploy A, deploy B, roll back (to A), roll back again (to B).
    """
    normalised = release_state(state)
    return _previous(_retained(normalised, 2), _current_sha(normalised))


def _listing(retained: list[Release], current_sha: str | None) -> str:
    if not retained:
        return "none"
    parts = []
    for item in retained:
        details = ", ".join(str(part) for part in (item["at"], item["by"]) if part)
        text = f"{item['sha']} ({details})" if details else str(item["sha"])
        if item["sha"] == current_sha:
            text += " (current)"
        parts.append(text)
    return ", ".join(parts)


def resolve_release(state: object, prefix: str | None, keep: int = 5) -> Release:
    """The retained release to roll back to.

    With no prefix (None or ''), the previous release (see previous_release).  Otherwise
    prefix must be 7-40 lowercase hex characters and is matched against the retained
    releases' shas: a sha equal to prefix wins, else exactly one sha must start with it.
    The item may be the current release; the caller decides what that means.
    Raises AnsibleFilterError listing the retained releases when nothing (or more than one
    release) matches.
    """
    normalised = release_state(state)
    retained = _retained(normalised, count_option(keep, "keep", minimum=1))
    current_sha = _current_sha(normalised)
    if missing(prefix):
        previous = _previous(retained, current_sha)
        if previous is None:
            raise AnsibleFilterError(
                "no previous release to roll back to; retained releases: "
                + _listing(retained, current_sha)
            )
        return previous
    error = sha_error(prefix)
    if error:
        raise AnsibleFilterError(error)
    for item in retained:
        if item["sha"] == prefix:
            return item
    matches = [item for item in retained if str(item["sha"]).startswith(str(prefix))]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AnsibleFilterError(
            f"sha {prefix!r} matches no retained release; retained releases: "
            + _listing(retained, current_sha)
        )
    shas = ", ".join(str(item["sha"]) for item in matches)
    raise AnsibleFilterError(
        f"sha {prefix!r} is ambiguous: it matches {shas}; give more characters"
    )


def _present_refs(present: object) -> list[str]:
    if isinstance(present, str):
        return [line.strip() for line in present.splitlines() if line.strip()]
    if isinstance(present, Sequence) and not isinstance(present, (bytes, bytearray)):
        return [str(ref) for ref in present if isinstance(ref, str)]
    raise AnsibleFilterError(
        f"present must be a list of image references, not {type_name(present)}"
    )


def images_to_prune(
    state: object,
    keep: int = 5,
    image_repo: str | None = None,
    present: Sequence[str] | str | None = None,
) -> list[str]:
    """Image references that can be removed: not the image of any retained release.

    Two uses:

    * ``present`` not given (history mode): the images named by history entries (succeeded
      or failed), deduplicated, oldest first, limited to ``image_repo:*`` when image_repo is
      given.  It only sees what history still holds, so run it on a state whose history
      has not yet been trimmed to ``keep`` (e.g. recorded with a larger keep).
    * ``present`` given (host mode, the robust one): the refs in ``present`` (the images on
      the host, a list or newline-separated text such as ``docker image ls --format
      '{{.Repository}}:{{.Tag}}'`` output) that are ``image_repo:<tag>`` and neither a
      retained release's image nor the current image; in the order given, deduplicated,
      ``<none>`` tags skipped.  image_repo is required here so that only this app's images
      are ever listed.
    """
    normalised = release_state(state)
    retained = _retained(normalised, count_option(keep, "keep", minimum=1))
    keep_images = {str(item["image"]) for item in retained}  # the current release's is first
    if image_repo is not None and image_repo != "":
        error = image_error(image_repo, name="image_repo")
        if error:
            raise AnsibleFilterError(error)
    prefix = f"{image_repo}:" if image_repo else ""
    if present is None:
        candidates = [str(entry["image"]) for entry in reversed(normalised["history"])]
    else:
        if not prefix:
            raise AnsibleFilterError(
                "image_repo is required when present is given, so that only this app's "
                "images are pruned"
            )
        candidates = [ref for ref in _present_refs(present) if ref != f"{prefix}<none>"]
    result: list[str] = []
    for ref in candidates:
        if not ref.startswith(prefix) or ref == prefix:
            continue
        if ref not in keep_images and ref not in result:
            result.append(ref)
    return result


def images_to_prune_at_start(
    state: object,
    entry: Mapping[str, Any],
    keep: int,
    image_repo: str,
    present: Sequence[str] | str,
) -> list[str]:
    """The images a run can remove as it starts its release, before it knows how it ends:
    those of ``present`` (host mode of images_to_prune: a deploy passes the repository's
    tags on the host, so an image left behind by an earlier run goes too) that neither
    outcome retains, the run's ``entry`` recorded as succeeded or as failed.  A failed run
    thus never loses an image it would have kept (the release that keeps serving and the
    ones before it); an image only a success drops goes with the next run."""
    outcomes = [
        images_to_prune(
            record_release(state, {**entry, "status": status}, keep), keep, image_repo, present
        )
        for status in ("succeeded", "failed")
    ]
    return [ref for ref in outcomes[0] if ref in set(outcomes[1])]


def history_lines(state: object, limit: int = 10) -> list[str]:
    """One line per history entry, newest first, at most limit lines, for status output.

    ``2026-11-27T04:00:00Z  deploy    abc1234def56  succeeded  by alice@ctl``; a failed
    entry ends with ``: <message>`` (flattened to one line and shortened).
    """
    normalised = release_state(state)
    lines: list[str] = []
    for entry in normalised["history"][: count_option(limit, "limit", minimum=0)]:
        line = (
            f"{entry['at'] or '?':<20}  {entry['kind']:<8}  {entry['sha'][:12]:<12}  "
            f"{entry['status']:<9}  by {entry['by'] or '?'}"
        )
        if entry["status"] == "failed" and entry["message"]:
            line += f": {one_line(entry['message'], MAX_MESSAGE)}"
        lines.append(line)
    return lines


def failed_hosts(hostvars: Mapping[str, Any], hosts: Sequence[str]) -> list[str]:
    """The hosts, of ``hosts``, whose run recorded ``app_deploy_run_outcome: failed``.

    ``hostvars`` is Ansible's (host name -> that host's variables). One answer to "did
    any host of this play fail?" for the serial-batch gate, the fleet rollback and the
    play that runs it.
    """
    failed: list[str] = []
    for host in hosts:
        variables = hostvars.get(host, {})
        if variables.get("app_deploy_run_outcome") == "failed":
            failed.append(str(host))
    return failed


# --------------------------------------------------------------------------- plugin


class FilterModule:
    """Ansible filter plugin: the release history, slot and fleet filters under their names."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        functions: tuple[Callable[..., Any], ...] = (
            other_slot,
            slot_containers,
            standby_release,
            standby_ready,
            reconcile_state,
            record_release,
            retained_releases,
            previous_release,
            resolve_release,
            images_to_prune,
            images_to_prune_at_start,
            history_lines,
            failed_hosts,
        )
        return {function.__name__: function for function in functions}
