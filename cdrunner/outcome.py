"""What a run did, per host and as a whole: pure functions over simplified events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from cdrunner.events import Event, Stats

VALIDATION_PLAY = "Validate the request (controller only, no host is contacted)"
ROLLED_BACK_MARK = "Rolled back automatically"
RELEASE_KEY = "melk_release"


class ExitCode(IntEnum):
    SUCCESS = 0
    ROLLED_BACK = 1
    REFUSED = 2
    UNREACHABLE = 3
    FAILED = 4


EXIT_MEANINGS = {
    ExitCode.SUCCESS: "success: the release serves on every host",
    ExitCode.ROLLED_BACK: "failed and rolled back: the release that served before serves again",
    ExitCode.REFUSED: "bad input, refused before any host was touched",
    ExitCode.UNREACHABLE: "one or more hosts unreachable (SSH, or a host key that does not match)",
    ExitCode.FAILED: "any other failure (deploy lock held, image pull failed, internal error)",
}

HEADLINES = {
    ExitCode.SUCCESS: "succeeded",
    ExitCode.ROLLED_BACK: "failed, rolled back",
    ExitCode.REFUSED: "refused",
    ExitCode.UNREACHABLE: "failed, host unreachable",
    ExitCode.FAILED: "failed",
}


@dataclass(frozen=True)
class HostReport:
    """One row of the summary."""

    host: str
    result: str  # succeeded | failed | noop | refused | unreachable | not run
    before: str | None
    after: str | None
    health: str  # healthy | unhealthy | unknown
    rolled_back: bool
    seconds: float | None
    message: str


def final_stats(events: Sequence[Event]) -> Stats | None:
    stats = [e.stats for e in events if e.stats is not None]
    return stats[-1] if stats else None


def release_data(stats: Stats | None) -> dict[str, Mapping[str, Any]]:
    """melk_release, the per-host records the roles leave with set_stats."""
    if stats is None:
        return {}
    data = stats.custom.get(RELEASE_KEY)
    if not isinstance(data, Mapping):
        return {}
    return {str(h): r for h, r in data.items() if isinstance(r, Mapping)}


def hosts_in(events: Sequence[Event]) -> list[str]:
    """Hosts in the order they first appear."""
    seen: dict[str, None] = {}
    for event in events:
        if event.host:
            seen.setdefault(event.host, None)
        if event.stats is not None:
            for table in (event.stats.ok, event.stats.failures, event.stats.dark):
                for host in table:
                    seen.setdefault(host, None)
    return list(seen)


def last_failure(events: Sequence[Event], host: str) -> Event | None:
    failures = [e for e in events if e.host == host and e.is_failure]
    return failures[-1] if failures else None


def host_seconds(events: Sequence[Event], host: str) -> float | None:
    """From the first to the last event of the host."""
    times = [e.created for e in events if e.host == host and e.created is not None]
    if not times:
        return None
    return (max(times) - min(times)).total_seconds()


def _sha(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _failed_host(stats: Stats | None, host: str) -> bool:
    return stats is not None and stats.failures.get(host, 0) > 0


def _unreachable_host(events: Sequence[Event], stats: Stats | None, host: str) -> bool:
    if stats is not None and stats.dark.get(host, 0) > 0:
        return True
    return any(e.host == host and e.status == "unreach" for e in events)


def host_report(events: Sequence[Event], host: str) -> HostReport:
    stats = final_stats(events)
    record = release_data(stats).get(host)
    failure = last_failure(events, host)
    failure_msg = failure.msg if failure is not None else ""
    seconds = host_seconds(events, host)
    if record is not None:
        result = str(record.get("outcome") or "unknown")
        if _failed_host(stats, host) and result != "failed":
            result = "failed"  # something failed after the roles reported
        return HostReport(
            host=host,
            result=result,
            before=_sha(record.get("before")),
            after=_sha(record.get("after")),
            health=str(record.get("health") or "unknown"),
            rolled_back=record.get("rolled_back") is True or ROLLED_BACK_MARK in failure_msg,
            seconds=seconds,
            message=str(record.get("message") or failure_msg) if result == "failed" else "",
        )
    if _unreachable_host(events, stats, host):
        result = "unreachable"
    elif failure is not None and failure.play == VALIDATION_PLAY:
        result = "refused"
    elif _failed_host(stats, host) or failure is not None:
        result = "failed"
    elif any(e.host == host and e.play != VALIDATION_PLAY and e.status for e in events):
        result = "succeeded" if stats is not None else "interrupted"
    else:
        result = "not run"
    return HostReport(
        host=host,
        result=result,
        before=None,
        after=None,
        health="unknown",
        rolled_back=ROLLED_BACK_MARK in failure_msg,
        seconds=seconds,
        message=failure_msg if result in {"unreachable", "refused", "failed"} else "",
    )


def host_reports(events: Sequence[Event]) -> list[HostReport]:
    return [host_report(events, host) for host in hosts_in(events)]


def classify(events: Sequence[Event], rc: int) -> ExitCode:
    """The exit code of a run, from its events and ansible-playbook's return code."""
    if rc == 0:
        return ExitCode.SUCCESS
    if any(e.status == "failed" and e.play == VALIDATION_PLAY for e in events):
        return ExitCode.REFUSED
    stats = final_stats(events)
    if stats is None:
        return ExitCode.FAILED  # stopped before the recap: error or interrupted
    if any(n > 0 for n in stats.dark.values()):
        return ExitCode.UNREACHABLE
    failed = [h for h, n in stats.failures.items() if n > 0]
    if failed and all(host_report(events, h).rolled_back for h in failed):
        return ExitCode.ROLLED_BACK
    return ExitCode.FAILED
