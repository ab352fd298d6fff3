"""What a run did, per host and as a whole: pure functions over simplified
events. Outcomes are read from data, never from task names or message text:

- ``melk_validation.<host>`` (set_stats by app_deploy's validate entry point,
  before its assert can fail): ``{accepted: bool, errors: [str]}``; a host with
  ``accepted: false`` was refused (bad input).
- ``melk_release.<host>`` (set_stats at the end of app_deploy's main.yml): ``{before,
  after, outcome, rolled_back, health, message}``.
- A failed result that carries ``argument_errors`` (an argument spec refused the
  inputs) on a host whose input check never reported: refused too.
- For a run that died before emitting any of this: ansible-playbook's return
  code, the events' types (``runner_on_unreachable``, ``runner_on_failed``) and
  the final recap (failures, dark).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from cdrunner.events import CENSORED_NOTE, Event, Stats

RELEASE_KEY = "melk_release"
VALIDATION_KEY = "melk_validation"


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
    result: str  # succeeded | failed | noop | refused | unreachable | interrupted | not run
    before: str | None
    after: str | None
    health: str  # healthy | unhealthy | unknown
    rolled_back: bool
    seconds: float | None
    message: str


def final_stats(events: Sequence[Event]) -> Stats | None:
    stats = [e.stats for e in events if e.stats is not None]
    return stats[-1] if stats else None


def _records(stats: Stats | None, key: str) -> dict[str, Mapping[str, Any]]:
    """stats.custom[key]: per-host records left with set_stats."""
    if stats is None:
        return {}
    data = stats.custom.get(key)
    if not isinstance(data, Mapping):
        return {}
    return {str(h): r for h, r in data.items() if isinstance(r, Mapping)}


def release_data(stats: Stats | None) -> dict[str, Mapping[str, Any]]:
    """melk_release, the per-host records the roles leave with set_stats."""
    return _records(stats, RELEASE_KEY)


def validation_data(stats: Stats | None) -> dict[str, Mapping[str, Any]]:
    """melk_validation, the per-host verdicts of the input check."""
    return _records(stats, VALIDATION_KEY)


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


def failure_message(event: Event | None) -> str:
    """What a failed result says; never anything of a no_log result."""
    if event is None:
        return ""
    return CENSORED_NOTE if event.censored else event.msg


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


def unreachable_host(events: Sequence[Event], host: str) -> bool:
    """The recap counts the host as dark, or an event says it was unreachable."""
    stats = final_stats(events)
    if stats is not None and stats.dark.get(host, 0) > 0:
        return True
    return any(e.host == host and e.status == "unreach" for e in events)


def refusal(events: Sequence[Event], host: str) -> str | None:
    """Why the host's inputs were refused (bad input), or None when they were not."""
    verdict = validation_data(final_stats(events)).get(host)
    if verdict is not None:
        if verdict.get("accepted") is not False:
            return None
        errors = verdict.get("errors")
        reasons = [str(e) for e in errors] if isinstance(errors, list) else []
        # Shown as Ansible said it (the refusing task's msg), else the reasons.
        return failure_message(last_failure(events, host)) or "; ".join(reasons) or "bad input"
    spec = [e for e in events if e.host == host and e.status == "failed" and e.bad_arguments]
    if not spec:
        return None
    return failure_message(spec[-1]) or "bad input"


def _reported(events: Sequence[Event], host: str, record: Mapping[str, Any]) -> HostReport:
    """The report of a host whose roles left a melk_release record."""
    result = str(record.get("outcome") or "unknown")
    if _failed_host(final_stats(events), host) and result != "failed":
        result = "failed"  # something failed after the roles reported
    message = str(record.get("message") or failure_message(last_failure(events, host)))
    return HostReport(
        host=host,
        result=result,
        before=_sha(record.get("before")),
        after=_sha(record.get("after")),
        health=str(record.get("health") or "unknown"),
        rolled_back=record.get("rolled_back") is True,
        seconds=host_seconds(events, host),
        message=message if result == "failed" else "",
    )


def _unreported_result(events: Sequence[Event], host: str, rc: int) -> tuple[str, str]:
    """Result and message of a host that left no melk_release record. An
    unreachable host is unreachable, even when no input check reported on it."""
    failure = failure_message(last_failure(events, host))
    if unreachable_host(events, host):
        return "unreachable", failure
    reason = refusal(events, host)
    if reason is not None:
        return "refused", reason
    stats = final_stats(events)
    if _failed_host(stats, host) or last_failure(events, host) is not None:
        return "failed", failure
    if stats is None:
        worked = any(e.host == host and e.status for e in events)
        return ("interrupted" if worked else "not run"), ""
    return ("succeeded" if rc == 0 else "not run"), ""


def host_report(events: Sequence[Event], host: str, rc: int = 0) -> HostReport:
    """One host's row, from its melk_release record, else from the fallback
    data (recap, event types, rc)."""
    record = release_data(final_stats(events)).get(host)
    if record is not None:
        return _reported(events, host, record)
    result, message = _unreported_result(events, host, rc)
    return HostReport(
        host=host,
        result=result,
        before=None,
        after=None,
        health="unknown",
        rolled_back=False,
        seconds=host_seconds(events, host),
        message=message,
    )


def host_reports(events: Sequence[Event], rc: int = 0) -> list[HostReport]:
    return [host_report(events, host, rc) for host in hosts_in(events)]


def classify(events: Sequence[Event], rc: int) -> ExitCode:
    """The exit code of a run, from its events and ansible-playbook's return code."""
    if rc == 0:
        return ExitCode.SUCCESS
    if any(r.result == "refused" for r in host_reports(events, rc)):
        return ExitCode.REFUSED
    stats = final_stats(events)
    if stats is None:
        return ExitCode.FAILED  # stopped before the recap: error or interrupted
    if any(n > 0 for n in stats.dark.values()):
        return ExitCode.UNREACHABLE
    failed = [h for h, n in stats.failures.items() if n > 0]
    if failed and all(host_report(events, h, rc).rolled_back for h in failed):
        return ExitCode.ROLLED_BACK
    return ExitCode.FAILED
