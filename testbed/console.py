"""What make demo and make bench print: lines, durations, a live status line."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from testbed import ROOT

INDENT = "    "

# A status line and what must change for it to be printed again without a terminal.
Status = Callable[[], tuple[str, str]]


def say(line: str = "") -> None:
    print(line, flush=True)


def rel(path: Path) -> str:
    """A path as the user sees it from the repository root."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def wrap(text: str, width: int = 92, prefix: str = INDENT + "  ") -> None:
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            say(prefix + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        say(prefix + line)


class Ticker:
    """One status line: on a terminal rewritten in place every second; otherwise
    (a log, a CI console) a new line every few seconds when it says something new."""

    def __init__(self, status: Status) -> None:
        self.status = status
        self.tty = sys.stdout.isatty()
        self.every = 1.0 if self.tty else 5.0
        self._last = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _show(self, text: str, key: str) -> None:
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            sys.stdout.write("\r\033[K" + clip(text, width))
            sys.stdout.flush()
        elif key != self._last:
            self._last = key
            say(clip(text, 110))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._show(*self.status())

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.tty:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()
