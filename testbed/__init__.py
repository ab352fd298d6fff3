"""The project's test bed: a Docker engine, local base images, SSH test servers.

Tests, `make test`, `make demo` and `make bench` call this package; nothing in
it pulls an image from a registry.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".testbed"
_START = time.monotonic()


class TestbedError(RuntimeError):
    """A test bed step failed; the message says what is missing and what to do."""


def log(message: str) -> None:
    """One progress line on stderr, with seconds since start."""
    print(f"[testbed {time.monotonic() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)
