"""Unit tests for module_utils/melk_lock.py: deciding, reading, writing and parsing the lock."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import melk_lock
from ansible.module_utils.melk_lock import (
    CORRUPT,
    CREATE,
    FOREIGN,
    KEEP,
    REMOVE,
    Found,
    create_lock,
    decide,
    format_time,
    parse_lock,
    parse_time,
    read_lock,
)

HOLDER = {
    "owner": "alice@ctl",
    "run_id": "run-a",
    "purpose": "deploy",
    "since": "2026-11-27T04:00:00Z",
    "pid_host": "app1",
}


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "deploy.lock"


# --------------------------------------------------------------------------- decide


def test_decide_reads_a_lock_as_readable_unless_told() -> None:
    assert decide(None, "acquire", "run-a") == CREATE
    assert decide(HOLDER, "acquire", "run-a") == KEEP
    assert decide(HOLDER, "release", "run-a") == REMOVE


@pytest.mark.parametrize(("state", "action"), [("acquire", CORRUPT), ("release", FOREIGN)])
def test_a_lock_marked_corrupt_is_never_taken_for_ours(state: str, action: str) -> None:
    """Even with a holder that names this run, corrupt wins: nothing is kept or removed."""
    assert decide(HOLDER, state, "run-a", corrupt=True) == action


# --------------------------------------------------------------------------- time


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The host's local time zone is not UTC."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("berlin")
def test_format_time_writes_utc_whatever_the_hosts_zone() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 11, 27, 6, 0, 0, tzinfo=plus_two)) == "2026-11-27T04:00:00Z"


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-27T03:47:48Z",
        "2026-11-27T03:47:48+00:00",
        "2026-11-27T05:47:48+02:00",
        "2026-11-27T03:47:48",  # no offset: UTC
    ],
)
def test_parse_time_gives_an_aware_moment(text: str) -> None:
    moment = parse_time(text)
    assert moment is not None
    assert moment.tzinfo is not None
    assert moment == datetime(2026, 11, 27, 3, 47, 48, tzinfo=UTC)


def test_parse_time_keeps_the_written_offset() -> None:
    moment = parse_time("2026-11-27T05:47:48+02:00")
    assert moment is not None
    assert moment.utcoffset() == timedelta(hours=2)


# --------------------------------------------------------------------------- parse and read


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "the file is empty"), (" \n", "the file is empty"), ("[1]", "not a JSON object")],
)
def test_parse_lock_says_exactly_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_lock(text)
    assert str(raised.value) == reason


def test_parse_lock_names_the_json_error() -> None:
    with pytest.raises(ValueError) as raised:
        parse_lock("{")
    assert str(raised.value).startswith("not valid JSON: Expecting property name")


class Reads:
    """Counts read_text calls and never sleeps; on_sleep runs at each wait."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, on_sleep: Any = None) -> None:
        self.reads = 0
        self.slept: list[float] = []
        self.on_sleep = on_sleep
        real = melk_lock.read_text

        def read_text(path: str) -> str | None:
            self.reads += 1
            return real(path)  # type: ignore[no-any-return]

        monkeypatch.setattr(melk_lock, "read_text", read_text)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.on_sleep:
            self.on_sleep(len(self.slept))


def test_a_written_lock_is_read_once_without_waiting(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock_path.write_text(json.dumps(HOLDER))
    reads = Reads(monkeypatch)
    assert read_lock(str(lock_path), sleep=reads.sleep) == Found(HOLDER, None)
    assert (reads.reads, reads.slept) == (1, [])


def test_no_lock_file_is_no_lock_without_waiting(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = Reads(monkeypatch)
    assert read_lock(str(lock_path), sleep=reads.sleep) == Found(None, None)
    assert (reads.reads, reads.slept) == (1, [])


def test_a_lock_written_during_the_last_wait_is_read(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock_path.write_text("")

    def write_at_the_last_wait(waits: int) -> None:
        if waits == melk_lock.EMPTY_READ_RETRIES:
            lock_path.write_text(json.dumps(HOLDER))

    reads = Reads(monkeypatch, write_at_the_last_wait)
    assert read_lock(str(lock_path), sleep=reads.sleep) == Found(HOLDER, None)
    assert reads.reads == melk_lock.EMPTY_READ_RETRIES + 1 == 11
    assert reads.slept == [melk_lock.EMPTY_READ_DELAY] * melk_lock.EMPTY_READ_RETRIES


def test_a_lock_removed_while_read_empty_is_no_lock(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock_path.write_text("")
    reads = Reads(monkeypatch, lambda waits: lock_path.unlink())
    assert read_lock(str(lock_path), sleep=reads.sleep) == Found(None, None)
    assert (reads.reads, len(reads.slept)) == (2, 1)


# --------------------------------------------------------------------------- create


def test_create_lock_writes_sorted_json_and_a_newline(lock_path: Path) -> None:
    record = {"since": "2026-11-27T04:00:00Z", "owner": "zoë@ctl", "run_id": "r"}
    assert create_lock(str(lock_path), record) is True
    assert lock_path.read_bytes() == (
        b'{"owner": "zo\\u00eb@ctl", "run_id": "r", "since": "2026-11-27T04:00:00Z"}\n'
    )


def test_create_lock_finishes_a_short_write(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def five_bytes_at_a_time(handle: int, data: bytes) -> int:
        return real_write(handle, data[:5])

    monkeypatch.setattr(melk_lock.os, "write", five_bytes_at_a_time)
    assert create_lock(str(lock_path), HOLDER) is True
    monkeypatch.undo()
    assert json.loads(lock_path.read_text()) == HOLDER


def test_a_lock_that_cannot_be_synced_is_not_left_behind(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A half-written lock would block every later deploy: the file goes, the error stays."""

    def fsync(handle: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(melk_lock.os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error"):
        create_lock(str(lock_path), HOLDER)
    assert not lock_path.exists()
