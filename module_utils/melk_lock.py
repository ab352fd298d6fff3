"""A per-host lock file: who holds it, taking it (O_CREAT|O_EXCL), reading it, removing it.

The lock of the deploy_lock module, on its own so that it is one small tested unit: the
module adds what it reads and writes under the lock. Shipped to the managed host with
the module (see melk_files.py): Python 3.8 syntax.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

from ansible.module_utils.melk_files import read_text, remove_file

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

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# An acquire writes its JSON just after creating the file: a lock read empty is read again.
EMPTY_READ_RETRIES = 10
EMPTY_READ_DELAY = 0.1
# A create lost to another run is followed by another look; this many looks at most.
CREATE_ATTEMPTS = 3


class Found(NamedTuple):
    """A look at the lock: (holder, None) for a readable lock, (None, why) for a bad one,
    (None, None) for no lock file."""

    holder: Mapping[str, Any] | None
    reason: str | None


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


def read_lock(path: str, sleep: Callable[[float], None] = time.sleep) -> Found:
    """The lock at path. A lock read empty is read again (its creator may not have
    written it yet) up to EMPTY_READ_RETRIES times, EMPTY_READ_DELAY apart."""
    try:
        text = read_text(path)
        for _retry in range(EMPTY_READ_RETRIES):
            if text is None or text.strip():
                break
            sleep(EMPTY_READ_DELAY)
            text = read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        return Found(None, f"cannot read it: {exc}")
    if text is None:
        return Found(None, None)
    try:
        return Found(parse_lock(text), None)
    except ValueError as exc:
        return Found(None, str(exc))


def create_lock(path: str, record: Mapping[str, Any]) -> bool:
    """Create the lock file with record in it; False if a lock file already exists.

    O_CREAT|O_EXCL: of two runs creating it at once, exactly one succeeds.
    """
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        while data:
            written = os.write(handle, data)
            data = data[written:]
        os.fsync(handle)
    except BaseException:
        os.close(handle)
        os.unlink(path)
        raise
    os.close(handle)
    return True


def remove_lock(path: str) -> bool:
    """Remove the lock file; False if it was already gone."""
    removed: bool = remove_file(path)
    return removed


def take(
    path: str,
    record: Mapping[str, Any],
    check_mode: bool,
    read: Callable[[str], Found] = read_lock,
    create: Callable[[str, Mapping[str, Any]], bool] = create_lock,
) -> tuple[str, Mapping[str, Any] | None, str | None]:
    """Acquire the lock for record['run_id']: (action, lock found or taken, why unreadable).

    A create lost to another run (it created the file between our look and our create) is
    followed by another look, which finds that run's lock. When the file keeps appearing
    and vanishing for CREATE_ATTEMPTS looks, the answer is (HELD, None, None).
    """
    for _attempt in range(CREATE_ATTEMPTS):
        existing, reason = read(path)
        action = decide(existing, "acquire", str(record["run_id"]), corrupt=reason is not None)
        if action != CREATE:
            return action, existing, reason
        if check_mode or create(path, record):
            return CREATE, record, None
    return HELD, None, None
