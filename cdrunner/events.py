"""ansible-runner's events, simplified to what cdrunner prints and decides on,
and the one-line-per-task-and-host format of the live output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

CENSORED_NOTE = "(details hidden: the task is no_log)"

# Task actions whose results are bookkeeping, not work: not printed when ok.
QUIET_ACTIONS = frozenset(
    {
        "include_tasks",
        "include_role",
        "import_tasks",
        "import_role",
        "include_vars",
        "meta",
        "validate_argument_spec",
    }
)
# Actions whose ok result carries a message meant for the reader.
TALKING_ACTIONS = frozenset({"debug"})

STATUS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreach",
    "runner_on_skipped": "skipped",
}


@dataclass(frozen=True)
class Stats:
    """The run's final recap (playbook_on_stats), per host, plus set_stats data."""

    failures: Mapping[str, int] = field(default_factory=dict)
    dark: Mapping[str, int] = field(default_factory=dict)
    ok: Mapping[str, int] = field(default_factory=dict)
    rescued: Mapping[str, int] = field(default_factory=dict)
    custom: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    kind: str
    host: str = ""
    play: str = ""
    task: str = ""
    role: str = ""
    action: str = ""
    msg: str = ""
    changed: bool = False
    ignored: bool = False
    censored: bool = False
    bad_arguments: bool = False  # the result carries argument_errors (an argument spec refused)
    duration: float | None = None
    created: datetime | None = None
    stats: Stats | None = None

    @property
    def status(self) -> str:
        """ok, changed, failed, ignored, unreach, skipped (or '' for other events)."""
        word = STATUS.get(self.kind, "")
        if word == "ok" and self.changed:
            return "changed"
        if word == "failed" and self.ignored:
            return "ignored"
        return word

    @property
    def is_failure(self) -> bool:
        return self.status in {"failed", "unreach"}


def _short_action(action: str) -> str:
    return action.rsplit(".", 1)[-1]


def _counts(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int)}


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _message(res: object) -> tuple[str, bool]:
    """The msg of a task result, and whether the result was censored (no_log).
    Only msg is ever read: other fields may hold module arguments."""
    if not isinstance(res, Mapping):
        return "", False
    if "censored" in res:
        return "", True
    msg = res.get("msg", "")
    if isinstance(msg, list):
        msg = "\n".join(str(m) for m in msg)
    return str(msg).strip(), False


def _bad_arguments(res: object) -> bool:
    """Whether a result says an argument spec refused the inputs (its
    argument_errors field; only its presence is read, never its text)."""
    return isinstance(res, Mapping) and bool(res.get("argument_errors"))


def simplify(raw: Mapping[str, Any]) -> Event:
    """One ansible-runner event (the dict given to event_handler) as an Event."""
    data = raw.get("event_data") or {}
    kind = str(raw.get("event", ""))
    stats = None
    if kind == "playbook_on_stats":
        custom = data.get("artifact_data")
        stats = Stats(
            failures=_counts(data.get("failures")),
            dark=_counts(data.get("dark")),
            ok=_counts(data.get("ok")),
            rescued=_counts(data.get("rescued")),
            custom=custom if isinstance(custom, Mapping) else {},
        )
    msg, censored = _message(data.get("res"))
    duration = data.get("duration")
    return Event(
        kind=kind,
        host=str(data.get("host") or ""),
        play=str(data.get("play") or ""),
        task=str(data.get("task") or ""),
        role=str(data.get("role") or ""),
        action=_short_action(str(data.get("resolved_action") or data.get("task_action") or "")),
        msg=msg,
        changed=bool(isinstance(data.get("res"), Mapping) and data["res"].get("changed")),
        ignored=bool(data.get("ignore_errors")),
        censored=censored,
        bad_arguments=_bad_arguments(data.get("res")),
        duration=float(duration) if isinstance(duration, int | float) else None,
        created=_timestamp(raw.get("created")),
        stats=stats,
    )


def _indent(text: str, limit: int = 2000) -> str:
    if len(text) > limit:
        text = text[:limit] + " [...]"
    return "\n".join("        " + line for line in text.splitlines() if line.strip())


def format_event(event: Event, host_width: int = 12) -> str | None:
    """The printed line(s) of an event, or None when it is not worth a line."""
    if event.kind == "playbook_on_play_start":
        return f"== {event.play}"
    status = event.status
    if not status or status == "skipped":
        return None
    if status == "ok" and event.action in QUIET_ACTIONS:
        return None
    label = f"{event.role} : {event.task}" if event.role else event.task
    line = f"{status:<8}{event.host:<{host_width}}  {label}"
    if event.duration is not None:
        line += f"  ({event.duration:.1f} s)"
    detail = ""
    if status in {"failed", "ignored", "unreach"} or event.action in TALKING_ACTIONS:
        detail = CENSORED_NOTE if event.censored else event.msg
    return f"{line}\n{_indent(detail)}" if detail.strip() else line
