"""Input checks of the operations playbooks (playbooks/logs.yml, playbooks/run.yml).

Pure functions, run on the controller before any host is touched: each answers '' for
a good value, else why it is refused, naming the variable. A value that holds a Jinja
template is refused too: what reaches these checks literally (an inventory's !unsafe,
what the CD job passes) is never templated, and is not run as one either.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

# docker logs --since: a Go duration (10m, 1h30m, 1.5h) or a date/time (RFC 3339, or
# a Unix time).
_DURATION_RE = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_TIMESTAMP_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})?)?"
    r"|\d{9,10}(?:\.\d{1,9})?"
)
_TEMPLATE_MARKS = ("{{", "{%", "{#")
MAX_LINES = 100000
LINES_RULE = f"a whole number of lines from 1 to {MAX_LINES}"
SINCE_RULE = "a duration such as 10m, 2h or 1h30m, or a time such as 2026-12-05T10:00:00Z"
COMMAND_RULE = (
    "a command line such as 'sh -c \"echo hi\"', or a list of the command and its arguments"
)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _templated(value: object) -> bool:
    if isinstance(value, str):
        return any(mark in value for mark in _TEMPLATE_MARKS)
    if isinstance(value, list):
        return any(_templated(item) for item in value)
    return False


def log_lines_error(value: object, name: str = "lines") -> str:
    """'' if value is a whole number of lines (an int or a string of digits) in range."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is not None and 1 <= number <= MAX_LINES:
        return ""
    return f"{name} {_shown(value)} is invalid: {LINES_RULE}"


def log_since_error(value: object, name: str = "since") -> str:
    """'' if value is empty (no limit) or something docker logs --since takes."""
    if value is None or value == "":
        return ""
    if (
        isinstance(value, str)
        and not _templated(value)
        and (_DURATION_RE.fullmatch(value) or _TIMESTAMP_RE.fullmatch(value))
    ):
        return ""
    return f"{name} {_shown(value)} is invalid: {SINCE_RULE}"


def command_argv(value: object) -> list[str]:
    """The command as the list docker runs: a string split as a POSIX shell would split
    it (quotes group, nothing is expanded), a list as it is. ValueError when it cannot be."""
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list) and all(
        isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in value
    ):
        return [str(item) for item in value]
    raise ValueError(f"not a string or a list of strings: {type(value).__name__}")


def run_command_error(value: object, name: str = "command") -> str:
    """'' if value is a non-empty command (string or list) and holds no template."""
    if value is None or value == "" or value == []:
        return f"{name} is required: pass -e 'command=...', {COMMAND_RULE}"
    if _templated(value):
        return f"{name} {_shown(value)} is refused: it holds a template, and nothing is templated"
    try:
        argv = command_argv(value)
    except ValueError as exc:
        return f"{name} {_shown(value)} is invalid ({exc}): {COMMAND_RULE}"
    if not argv or not argv[0].strip():
        return f"{name} {_shown(value)} is invalid: it names no program; {COMMAND_RULE}"
    return ""


RELEASE_COMMAND_RULE = (
    "a list of the command and its arguments, such as [python3, manage.py, migrate]"
)


def release_command_error(value: object, name: str = "app_release_command") -> str:
    """'' if value is none (no release command) or a list naming a program, with no
    template in it."""
    if value is None or value == []:
        return ""
    if _templated(value):
        return f"{name} {_shown(value)} is refused: it holds a template, and nothing is templated"
    if not isinstance(value, list):
        return f"{name} {_shown(value)} is invalid: {RELEASE_COMMAND_RULE}"
    try:
        argv = command_argv(value)
    except ValueError as exc:
        return f"{name} {_shown(value)} is invalid ({exc}): {RELEASE_COMMAND_RULE}"
    if not argv[0].strip():
        return f"{name} {_shown(value)} is invalid: it names no program; {RELEASE_COMMAND_RULE}"
    return ""


def release_timeout_error(value: object, name: str = "app_release_timeout") -> str:
    """'' if value is a whole number of seconds above 0 (an int or a string of digits)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is not None and number >= 1:
        return ""
    return f"{name} {_shown(value)} is invalid: a whole number of seconds, 1 or more"


class FilterModule:
    """The checks above, as Jinja filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "log_lines_error": log_lines_error,
            "log_since_error": log_since_error,
            "run_command_error": run_command_error,
            "command_argv": command_argv,
            "release_command_error": release_command_error,
            "release_timeout_error": release_timeout_error,
        }
