#!/usr/bin/python
"""Ansible module deploy_lock: a per-host lock file that serialises deploys and rollbacks.

Besides the lock it reads, under the lock, what the run decides from, and writes the run's
record before the lock goes: one round trip each. Each job is its own unit: the lock in
module_utils/melk_lock.py, file reads, checksums and the atomic write in melk_files.py,
the image tags through the docker command line of melk_docker.py. This file decides and
reports; main() only connects it to Ansible.

This file runs on the managed host, whose Python may be older than the controller's: keep
it to syntax and library calls of Python 3.8, the oldest target of ansible-core 2.19
(new-style types only inside annotations, no datetime.UTC).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.melk_docker import image_tags_argv, missing, parse_tags, slot_argv
from ansible.module_utils.melk_files import file_sha256, read_text, write_atomic
from ansible.module_utils.melk_http import NO_ANSWER, get
from ansible.module_utils.melk_lock import (
    ABSENT,
    CORRUPT,
    FOREIGN,
    HELD,
    KEEP,
    REMOVE,
    STATES,
    decide,
    lock_record,
    parse_time,
    read_lock,
    remove_lock,
    take,
)
from ansible.module_utils.melk_module import Runner, finish, module_runner

DOCUMENTATION = r"""
module: deploy_lock
short_description: Per-host lock file that serialises deploys and rollbacks
description:
  - Acquires, releases or breaks a lock file on the managed host so that two deploys or
    rollbacks of the same app never run on a host at the same time.
  - C(acquire) creates the file atomically (C(O_CREAT|O_EXCL)) holding JSON with the owner,
    run id, purpose, start time and host name. Acquiring again with the same O(run_id) is a
    no-op; a lock held by another run fails with a message naming its holder.
  - C(release) removes the file only when it holds O(run_id); a lock of another run is left
    in place with a warning.
  - C(break) removes any lock, for when the run holding it is dead.
options:
  path:
    description: Lock file path, for example C(/opt/melk-ai/deploy.lock). Its directory must exist.
    type: path
    required: true
  state:
    description: What to do with the lock.
    type: str
    choices: [acquire, release, break]
    default: acquire
  break_first:
    description:
      - With O(state=acquire), remove any lock first (one left by a dead run, whoever holds
        it), then take it; RV(broken) says what was removed. The same as O(state=break)
        followed by O(state=acquire), in one round trip.
    type: bool
    default: false
  owner:
    description: Who takes the lock, as C(user@controller). Required for O(state=acquire).
    type: str
  run_id:
    description:
      - A unique id of this playbook run. Required for O(state=acquire) and O(state=release).
    type: str
  purpose:
    description: What the lock is taken for, shown to anyone who finds it held.
    type: str
    default: deploy
  read:
    description:
      - With O(state=acquire), files to read once the lock is held, returned in RV(files)
        (empty text for a file that does not exist). Reading the state the lock protects in
        the same task saves a round trip per deploy.
    type: list
    elements: path
  checksum:
    description:
      - With O(state=acquire), files whose SHA-256 is returned in RV(checksums) (empty text
        for a file that does not exist), for a file whose content must not be returned, such
        as the app's environment file (the caller compares, and writes only on a change).
    type: list
    elements: path
  image_repository:
    description:
      - With O(state=acquire), a Docker image repository whose tags on the host are returned in
        RV(image_tags) (C(docker image ls)), so a pull, or the check that a retained release is
        still there, needs no task of its own.
    type: str
  containers:
    description:
      - With O(state=acquire), containers (the app's two slots) whose slot and sha labels,
        state, restart count and address are returned in RV(containers), one line each
        (C(docker inspect --format), never the whole inspect output, which holds the app's
        environment), so the standby and the switch need no task of their own to find them.
    type: list
    elements: str
  probe_port:
    description:
      - With O(containers), the port the app listens on in its container. Each running
        container with an address gets one GET of C(http://<address>:<probe_port><probe_path>)
        and the status (-1 for no answer) is appended to its line in RV(containers). The
        address is where the edge's switch sends traffic, so a rollback to the standby
        knows it answers without a task of its own.
    type: int
  probe_path:
    description: The health path of O(probe_port)'s probe.
    type: str
    default: /health
  probe_timeout:
    description: Seconds that probe may take before it counts as no answer.
    type: float
    default: 2
  write:
    description:
      - With O(state=release), files to write (path to text) before the lock is removed,
        each atomically (a temporary file renamed over it, mode 0644). They are written
        only while this run holds the lock; otherwise the module fails and writes nothing.
        The run's record thus lands in the same step that ends it.
    type: dict
attributes:
  check_mode:
    description: Reports what would change and changes nothing.
    support: full
author:
  - melk-ai deploy maintainers
"""

EXAMPLES = r"""
- name: Take the deploy lock
  deploy_lock:
    path: "/opt/{{ app_name }}/deploy.lock"
    owner: "{{ lookup('env', 'USER') }}@{{ lookup('pipe', 'hostname') }}"
    run_id: "{{ deploy_run_id }}"
    purpose: deploy

- name: Break a lock left by a dead run, then take it
  deploy_lock:
    path: "/opt/{{ app_name }}/deploy.lock"
    owner: "{{ lookup('env', 'USER') }}@{{ lookup('pipe', 'hostname') }}"
    run_id: "{{ deploy_run_id }}"
    break_first: true

- name: Release the deploy lock
  deploy_lock:
    path: "/opt/{{ app_name }}/deploy.lock"
    state: release
    run_id: "{{ deploy_run_id }}"
"""

RETURN = r"""
lock:
  description: The lock as acquired or found (on failure, its holder).
  returned: when a lock was acquired, found or released
  type: dict
  sample:
    owner: alice@ctl
    run_id: "1764216000-4242"
    purpose: deploy
    since: "2026-11-27T04:00:00Z"
    pid_host: app1
broken:
  description: The lock removed by O(state=break) or O(break_first), or null when there was
    none.
  returned: when state is break, or acquire with O(break_first)
  type: dict
  sample:
    owner: alice@ctl
    run_id: "1764216000-4242"
    purpose: deploy
    since: "2026-11-27T04:00:00Z"
    pid_host: app1
written:
  description: The paths of O(write) that were written.
  returned: when state is release
  type: list
  elements: str
files:
  description: Path to text of each file in O(read), read once the lock was acquired.
  returned: when O(read) is set and the lock was acquired
  type: dict
  sample:
    /opt/melk-ai/releases.json: '{"version": 1, "current": null, "history": []}'
    /etc/nginx/edge-proxy/melk-ai.upstream: ""
checksums:
  description: Path to the SHA-256 (hex) of each file in O(checksum), empty for a missing file.
  returned: when O(checksum) is set and the lock was acquired
  type: dict
image_tags:
  description: The tags of O(image_repository) on the host.
  returned: when O(image_repository) is set and the lock was acquired
  type: list
  elements: str
  sample: [4f2c9e1d0b7a8c6e5f4d3c2b1a0f9e8d7c6b5a49]
containers:
  description: >-
    One line per container of O(containers) that exists - C(<slot> <running> <restarts> <sha>
    <ip>), then with O(probe_port) C(<status>) - as filter_plugins/release_history.py's
    slot_containers reads them.
  returned: when O(containers) is set and the lock was acquired
  type: str
  sample: "blue true 0 4f2c9e1d0b7a8c6e5f4d3c2b1a0f9e8d7c6b5a49 172.17.0.3 200"
action:
  description: >-
    What was decided: create, keep (already ours), held, corrupt, remove, absent, or
    foreign (held by another run, left in place).
  returned: always
  type: str
  sample: create
"""

_UTC = timezone.utc  # noqa: UP017  (datetime.UTC is Python 3.11+)

ARGUMENT_SPEC: dict[str, Any] = {
    "path": {"type": "path", "required": True},
    "state": {"type": "str", "default": "acquire", "choices": list(STATES)},
    "break_first": {"type": "bool", "default": False},
    "owner": {"type": "str"},
    "run_id": {"type": "str"},
    "purpose": {"type": "str", "default": "deploy"},
    "read": {"type": "list", "elements": "path"},
    "checksum": {"type": "list", "elements": "path"},
    "image_repository": {"type": "str"},
    "containers": {"type": "list", "elements": "str"},
    "probe_port": {"type": "int"},
    "probe_path": {"type": "str", "default": "/health"},
    "probe_timeout": {"type": "float", "default": 2.0},
    "write": {"type": "dict"},
}
# the parameters each state needs besides path
REQUIRED: dict[str, tuple[str, ...]] = {
    "acquire": ("owner", "run_id"),
    "release": ("run_id",),
    "break": (),
}
REQUIRED_IF = [("state", "acquire", ("owner", "run_id")), ("state", "release", ("run_id",))]

BREAK_HINT = "If that run is dead, break the lock with: -e deploy_lock_break=true"


# --------------------------------------------------------------------------- messages


def age_text(seconds: float | None) -> str:
    """A short age such as '45s', '3m 12s', '2h 5m' or '1d 3h'."""
    if seconds is None:
        return "an unknown time"
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _field(holder: Mapping[str, Any], key: str) -> str:
    value = holder.get(key)
    return "?" if value is None or value == "" else str(value)


def format_held_message(path: str, holder: Mapping[str, Any], now: datetime) -> str:
    """The failure message for an acquire that finds another run's lock."""
    since = parse_time(holder.get("since"))
    age = age_text(None if since is None else (now - since).total_seconds())
    return (
        f"deploy lock {path} is held by {_field(holder, 'owner')} ({_field(holder, 'purpose')}, "
        f"run {_field(holder, 'run_id')}) since {_field(holder, 'since')} ({age} ago). "
        f"Another deploy or rollback is running on this host. {BREAK_HINT}"
    )


def format_corrupt_message(path: str, reason: str | None) -> str:
    """The failure message for an acquire that finds an unreadable lock file."""
    return (
        f"deploy lock {path} exists but is unreadable or corrupt ({reason}), so its holder is "
        f"unknown. Another deploy or rollback may be running on this host. {BREAK_HINT}"
    )


def params_error(params: Mapping[str, Any]) -> str:
    """'' when the module parameters fit together, else why not."""
    state = params.get("state") or "acquire"
    if state not in STATES:
        return f"state must be one of {', '.join(STATES)}, got {state!r}"
    if not params.get("path"):
        return "path is required"
    missing = [key for key in REQUIRED[state] if not params.get(key)]
    if missing:
        return f"state={state} requires {' and '.join(missing)}"
    return ""


# --------------------------------------------------------------------------- the jobs


def read_files(paths: list[str]) -> dict[str, str]:
    """Path to text of each file; empty text for a file that does not exist."""
    return {path: read_text(path) or "" for path in paths}


def checksums(paths: list[str]) -> dict[str, str]:
    """Path to SHA-256 (hex) of each file; empty for a file that does not exist."""
    return {path: file_sha256(path) or "" for path in paths}


def image_tags(repository: str, runner: Runner) -> list[str]:
    """The tags of repository's images on the host; OSError when docker fails."""
    rc, out, err = runner(image_tags_argv(repository))
    if rc != 0:
        raise OSError(f"docker image ls {repository}: {err.strip()}")
    tags: list[str] = parse_tags(out)
    return tags


def slot_lines(names: list[str], runner: Runner) -> str:
    """The slot lines of the containers that exist (slot_argv's format); OSError when docker
    fails for another reason than a missing container."""
    rc, out, err = runner(slot_argv(names))
    if rc != 0 and not all(missing(line) for line in err.strip().splitlines()):
        raise OSError(f"docker inspect {' '.join(names)}: {err.strip()}")
    return str(out)


# One health probe of a container's address: its HTTP status, NO_ANSWER for none.
Prober = Callable[[str], int]


def probe_url(address: str, port: int, path: str) -> str:
    """Where a slot container's health is probed: its address on the Docker bridge."""
    return f"http://{address}:{port}{path}"


def http_prober(port: int, path: str, timeout: float) -> Prober:
    """One GET of probe_url per call; the status, NO_ANSWER when there was no answer."""

    def probe(address: str) -> int:
        status: int = get(probe_url(address, port, path), timeout)[0]
        return status

    return probe


def with_health(lines: str, probe: Prober) -> str:
    """slot_lines' lines, each with the status of one probe of its container appended
    (NO_ANSWER for a container that is not running or has no address)."""
    probed = []
    for line in lines.splitlines():
        fields = line.split(" ")
        if len(fields) < 4:
            continue
        address = fields[4] if len(fields) > 4 else ""
        status = probe(address) if fields[1] == "true" and address else NO_ANSWER
        probed.append(f"{' '.join(fields[:4])} {address} {status}")
    return "".join(f"{line}\n" for line in probed)


def write_files(writes: Mapping[str, Any]) -> list[str]:
    """Write each path's text atomically (mode 0644); the paths written, sorted."""
    written = sorted(writes)
    for target in written:
        write_atomic(target, str(writes[target]))
    return written


def read_state(
    params: Mapping[str, Any], runner: Runner | None, prober: Prober | None = None
) -> dict[str, Any]:
    """What acquire returns besides the lock: O(read), O(checksum), O(image_repository),
    O(containers) (with O(probe_port), each one's health: prober, else an HTTP GET).
    The image lookup runs in a thread beside the containers' (two docker commands that
    wait on the engine: on a busy host, one of them less in the task's time)."""
    found: dict[str, Any] = {}
    if params.get("image_repository") and runner is None:
        raise ValueError("image_repository given without a way to look it up")
    if params.get("containers") and runner is None:
        raise ValueError("containers given without a way to look them up")
    with ThreadPoolExecutor(max_workers=1) as pool:
        tags = None
        if params.get("image_repository") and runner is not None:
            tags = pool.submit(image_tags, str(params["image_repository"]), runner)
        if params.get("read"):
            found["files"] = read_files([str(path) for path in params["read"]])
        if params.get("checksum"):
            found["checksums"] = checksums([str(path) for path in params["checksum"]])
        if params.get("containers") and runner is not None:
            lines = slot_lines([str(name) for name in params["containers"]], runner)
            if params.get("probe_port"):
                probe = prober or http_prober(
                    int(params["probe_port"]),
                    str(params.get("probe_path") or "/health"),
                    float(params.get("probe_timeout") or 2.0),
                )
                lines = with_health(lines, probe)
            found["containers"] = lines
        if tags is not None:
            found["image_tags"] = tags.result()  # its OSError, raised here
    return found


# --------------------------------------------------------------------------- the states


def _acquire(
    params: Mapping[str, Any],
    check_mode: bool,
    now: datetime,
    runner: Runner | None,
    prober: Prober | None = None,
) -> dict[str, Any]:
    path = str(params["path"])
    record = lock_record(
        str(params["owner"]),
        str(params["run_id"]),
        str(params.get("purpose") or "deploy"),
        now,
        platform.node(),
    )
    action, lock, reason = take(path, record, check_mode)
    if action == KEEP:
        result = {
            "action": KEEP,
            "lock": lock,
            "msg": f"deploy lock {path} is already held by this run",
        }
    elif action == HELD and lock is None:
        return {
            "failed": True,
            "action": HELD,
            "msg": f"deploy lock {path} keeps changing hands; try again. {BREAK_HINT}",
        }
    elif action == HELD:
        return {
            "failed": True,
            "action": HELD,
            "lock": lock,
            "msg": format_held_message(path, lock or {}, now),
        }
    elif action == CORRUPT:
        return {
            "failed": True,
            "action": CORRUPT,
            "msg": format_corrupt_message(path, reason),
        }
    else:
        result = {
            "changed": True,
            "action": action,
            "lock": lock,
            "msg": f"acquired deploy lock {path}",
        }
    result.update(read_state(params, runner, prober))
    return result


def _release(params: Mapping[str, Any], check_mode: bool) -> dict[str, Any]:
    path = str(params["path"])
    writes: Mapping[str, Any] = params.get("write") or {}
    existing, reason = read_lock(path)
    action = decide(existing, "release", str(params["run_id"]), corrupt=reason is not None)
    if writes and action != REMOVE:
        return {
            "failed": True,
            "action": action,
            "lock": existing,
            "written": [],
            "msg": (
                f"deploy lock {path} is no longer held by this run (it was broken), so "
                f"{', '.join(sorted(writes))} was not written: this run's record is lost. "
                "Check what serves with playbooks/status.yml."
            ),
        }
    if action == ABSENT:
        return {"changed": False, "action": ABSENT, "msg": f"deploy lock {path} is not held"}
    if action == FOREIGN:
        if existing is None:
            warning = f"deploy lock {path} is unreadable ({reason}); left in place. {BREAK_HINT}"
        else:
            warning = (
                f"deploy lock {path} is held by {_field(existing, 'owner')} (run "
                f"{_field(existing, 'run_id')}), not by this run; left in place"
            )
        return {
            "changed": False,
            "action": FOREIGN,
            "lock": existing,
            "msg": f"deploy lock {path} left in place: it is not held by this run",
            "warnings": [warning],
        }
    written = sorted(writes)
    if not check_mode:
        write_files(writes)
        remove_lock(path)
    return {
        "changed": True,
        "action": REMOVE,
        "lock": existing,
        "written": written,
        "msg": f"released deploy lock {path}",
    }


def _break(params: Mapping[str, Any], check_mode: bool) -> dict[str, Any]:
    path = str(params["path"])
    existing, reason = read_lock(path)
    action = decide(existing, "break", None, corrupt=reason is not None)
    if action == ABSENT or (not check_mode and not remove_lock(path)):
        return {
            "changed": False,
            "action": ABSENT,
            "broken": None,
            "msg": f"deploy lock {path} is not held",
        }
    broken = existing if existing is not None else {"unreadable": reason}
    return {"changed": True, "action": REMOVE, "broken": broken, "msg": f"broke deploy lock {path}"}


def run(
    params: Mapping[str, Any],
    check_mode: bool,
    runner: Runner | None = None,
    now: datetime | None = None,
    prober: Prober | None = None,
) -> dict[str, Any]:
    """Do what params ask; a result dict for exit_json, with failed=True to fail.

    A 'warnings' list in the result is for AnsibleModule.warn. runner runs the docker
    commands that answer O(image_repository) and O(containers); prober, the probes of
    O(probe_port) (default: an HTTP GET).
    """
    error = params_error(params)
    if error:
        return {"failed": True, "changed": False, "msg": error}
    moment = now if now is not None else datetime.now(_UTC)
    path = str(params["path"])
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return {
            "failed": True,
            "changed": False,
            "msg": (
                f"directory {directory} of deploy lock {path} does not exist: "
                "provision the host first (playbooks/provision.yml)"
            ),
        }
    state = params.get("state") or "acquire"
    try:
        if state == "acquire" and params.get("break_first"):
            broken = _break(params, check_mode)["broken"]
            result = {**_acquire(params, check_mode, moment, runner, prober), "broken": broken}
        elif state == "acquire":
            result = _acquire(params, check_mode, moment, runner, prober)
        elif state == "release":
            result = _release(params, check_mode)
        else:
            result = _break(params, check_mode)
    except OSError as exc:
        return {
            "failed": True,
            "changed": False,
            "msg": f"deploy lock {path}: {state} failed: {exc}",
        }
    result.setdefault("changed", False)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True
    )
    finish(module, run(dict(module.params), module.check_mode, module_runner(module)))


if __name__ == "__main__":
    main()
