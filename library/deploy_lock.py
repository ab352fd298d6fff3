#!/usr/bin/python
"""Ansible module deploy_lock: a per-host lock file that serialises deploys and rollbacks.

This file runs on the managed host, whose Python may be older than the controller's: keep
it to syntax and library calls of Python 3.8, the oldest target of ansible-core 2.19
(new-style types only inside annotations, no datetime.UTC).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule

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

- name: Break a lock left by a dead run
  deploy_lock:
    path: "/opt/{{ app_name }}/deploy.lock"
    state: break
  when: deploy_lock_break | default(false) | bool

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
  description: The lock removed by O(state=break), or null when there was none.
  returned: when state is break
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
action:
  description: >-
    What was decided: create, keep (already ours), held, corrupt, remove, absent, or
    foreign (held by another run, left in place).
  returned: always
  type: str
  sample: create
"""

_UTC = timezone.utc  # noqa: UP017  (datetime.UTC is Python 3.11+)

STATES = ("acquire", "release", "break")

# actions decided from the existing lock and the requested state
CREATE = "create"  # acquire, no lock: create it
KEEP = "keep"  # acquire, our own lock: nothing to do
HELD = "held"  # acquire, another run's lock: fail
CORRUPT = "corrupt"  # acquire, unreadable lock: fail
REMOVE = "remove"  # release of our lock, or break of any lock
ABSENT = "absent"  # release or break, no lock: nothing to do
FOREIGN = "foreign"  # release, another run's (or an unreadable) lock: leave it, warn

BREAK_HINT = "If that run is dead, break the lock with: -e deploy_lock_break=true"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
EMPTY_READ_RETRIES = 10  # an acquire writes its JSON just after creating the file
EMPTY_READ_DELAY = 0.1


# --------------------------------------------------------------------------- pure logic


def decide(
    existing: Mapping[str, Any] | None, state: str, run_id: str | None, corrupt: bool = False
) -> str:
    """The action for a requested state, given the lock found (None: no lock file).

    corrupt=True means a lock file exists but could not be read or parsed.
    """
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    exists = corrupt or existing is not None
    if not exists:
        return CREATE if state == "acquire" else ABSENT
    if state == "break":
        return REMOVE
    if corrupt or existing is None:
        return CORRUPT if state == "acquire" else FOREIGN
    ours = run_id is not None and existing.get("run_id") == run_id
    if state == "acquire":
        return KEEP if ours else HELD
    return REMOVE if ours else FOREIGN


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


def format_time(moment: datetime) -> str:
    """UTC ISO 8601 with a 'Z', to the second."""
    return moment.astimezone(_UTC).strftime(TIME_FORMAT)


def parse_time(text: object) -> datetime | None:
    """The moment written by format_time (or any ISO 8601 with an offset), else None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=_UTC)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_UTC)


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


def format_corrupt_message(path: str, reason: str) -> str:
    """The failure message for an acquire that finds an unreadable lock file."""
    return (
        f"deploy lock {path} exists but is unreadable or corrupt ({reason}), so its holder is "
        f"unknown. Another deploy or rollback may be running on this host. {BREAK_HINT}"
    )


def lock_record(owner: str, run_id: str, purpose: str, now: datetime, node: str) -> dict[str, Any]:
    """The JSON document an acquire writes."""
    return {
        "owner": owner,
        "run_id": run_id,
        "purpose": purpose,
        "since": format_time(now),
        "pid_host": node,
    }


def parse_lock(text: str) -> dict[str, Any]:
    """The lock document in text; ValueError when it is not a JSON object."""
    if not text.strip():
        raise ValueError("the file is empty")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def params_error(params: Mapping[str, Any]) -> str:
    """'' when the module parameters fit together, else why not."""
    state = params.get("state") or "acquire"
    if state not in STATES:
        return f"state must be one of {', '.join(STATES)}, got {state!r}"
    if not params.get("path"):
        return "path is required"
    missing = [key for key in ("owner", "run_id") if not params.get(key)]
    if state == "release":
        missing = [key for key in missing if key == "run_id"]
    if state == "break":
        missing = []
    if missing:
        return f"state={state} requires {' and '.join(missing)}"
    return ""


# --------------------------------------------------------------------------- file access


def read_lock(path: str) -> tuple[dict[str, Any] | None, str | None]:
    """(holder, None) for a readable lock, (None, reason) for a bad one, (None, None) if none."""
    text = ""
    for attempt in range(EMPTY_READ_RETRIES + 1):
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError) as exc:
            return None, f"cannot read it: {exc}"
        if text.strip() or attempt == EMPTY_READ_RETRIES:
            break
        time.sleep(EMPTY_READ_DELAY)
    try:
        return parse_lock(text), None
    except ValueError as exc:
        return None, str(exc)


def create_lock(path: str, record: Mapping[str, Any]) -> bool:
    """Create the lock file with record in it; False if a lock file already exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        while data:
            written = os.write(fd, data)
            data = data[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return True


def read_text(path: str) -> str:
    """The text of a file, or '' when it does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def file_checksum(path: str) -> str:
    """SHA-256 (hex) of a file's bytes; empty for a file that does not exist."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(65536), b""):
                digest.update(block)
    except FileNotFoundError:
        return ""
    return digest.hexdigest()


def write_atomic(path: str, text: str) -> None:
    """Write text to path through a temporary file in its directory, renamed over it."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".deploy-lock-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_lock(path: str) -> bool:
    """Remove the lock file; False if it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# --------------------------------------------------------------------------- the work


def _acquire(params: Mapping[str, Any], check_mode: bool, now: datetime) -> dict[str, Any]:
    path = str(params["path"])
    record = lock_record(
        str(params["owner"]),
        str(params["run_id"]),
        str(params.get("purpose") or "deploy"),
        now,
        platform.node(),
    )
    for _attempt in range(3):
        existing, reason = read_lock(path)
        action = decide(existing, "acquire", str(params["run_id"]), corrupt=reason is not None)
        if action == KEEP:
            return {
                "changed": False,
                "action": KEEP,
                "lock": existing,
                "msg": f"deploy lock {path} is already held by this run",
            }
        if action == HELD:
            return {
                "failed": True,
                "action": HELD,
                "lock": existing,
                "msg": format_held_message(path, existing or {}, now),
            }
        if action == CORRUPT:
            return {
                "failed": True,
                "action": CORRUPT,
                "msg": format_corrupt_message(path, reason or "unknown"),
            }
        if check_mode or create_lock(path, record):
            return {
                "changed": True,
                "action": CREATE,
                "lock": record,
                "msg": f"acquired deploy lock {path}",
            }
        # another run created the file between our read and our create: look again
    return {
        "failed": True,
        "action": HELD,
        "msg": f"deploy lock {path} keeps changing hands; try again. {BREAK_HINT}",
    }


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
        for target in written:
            write_atomic(target, str(writes[target]))
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
    if action == ABSENT:
        return {
            "changed": False,
            "action": ABSENT,
            "broken": None,
            "msg": f"deploy lock {path} is not held",
        }
    broken = existing if existing is not None else {"unreadable": reason}
    if not check_mode and not remove_lock(path):
        return {
            "changed": False,
            "action": ABSENT,
            "broken": None,
            "msg": f"deploy lock {path} is not held",
        }
    return {"changed": True, "action": REMOVE, "broken": broken, "msg": f"broke deploy lock {path}"}


def _read_state(
    params: Mapping[str, Any], image_tags: Callable[[str], list[str]] | None
) -> dict[str, Any]:
    """What acquire returns besides the lock: O(read), O(checksum), O(image_repository)."""
    found: dict[str, Any] = {}
    if params.get("read"):
        found["files"] = {str(path): read_text(str(path)) for path in params["read"]}
    if params.get("checksum"):
        found["checksums"] = {str(path): file_checksum(str(path)) for path in params["checksum"]}
    if params.get("image_repository"):
        if image_tags is None:
            raise ValueError("image_repository given without a way to look it up")
        found["image_tags"] = image_tags(str(params["image_repository"]))
    return found


def run(
    params: Mapping[str, Any],
    check_mode: bool,
    now: datetime | None = None,
    image_tags: Callable[[str], list[str]] | None = None,
) -> dict[str, Any]:
    """Do what params ask; a result dict for exit_json, with failed=True to fail.

    A 'warnings' list in the result is for AnsibleModule.warn. image_tags answers
    O(image_repository) (the module asks docker).
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
        if state == "acquire":
            result = _acquire(params, check_mode, moment)
            if not result.get("failed"):
                result.update(_read_state(params, image_tags))
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
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "default": "acquire", "choices": list(STATES)},
            "owner": {"type": "str"},
            "run_id": {"type": "str"},
            "purpose": {"type": "str", "default": "deploy"},
            "read": {"type": "list", "elements": "path"},
            "checksum": {"type": "list", "elements": "path"},
            "image_repository": {"type": "str"},
            "write": {"type": "dict"},
        },
        required_if=[("state", "acquire", ("owner", "run_id")), ("state", "release", ("run_id",))],
        supports_check_mode=True,
    )

    def image_tags(repository: str) -> list[str]:
        rc, out, err = module.run_command(
            ["docker", "image", "ls", "--format", "{{.Tag}}", repository]
        )
        if int(rc) != 0:
            raise OSError(f"docker image ls {repository}: {str(err).strip()}")
        return sorted(tag for tag in str(out).split() if tag != "<none>")

    result = run(dict(module.params), module.check_mode, image_tags=image_tags)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
