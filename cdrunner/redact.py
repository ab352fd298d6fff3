"""Defense in depth: mask known secret values in what cdrunner prints, and check
(and, should one ever be there, mask) ansible-runner's kept artifacts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

MASK = "********"


def mask(text: str, secrets: Sequence[str]) -> str:
    """The text with every known secret value replaced (longest first)."""
    for value in sorted(secrets, key=len, reverse=True):
        if value:
            text = text.replace(value, MASK)
    return text


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def scrub_artifacts(root: Path, secrets: Sequence[str]) -> list[Path]:
    """Mask secret values in every file under root; return the files that held
    one. cdrunner's design keeps secrets out of the artifacts; a non-empty list
    means something leaked one (a task without no_log) and is reported loudly."""
    leaked: list[Path] = []
    if not secrets:
        return leaked
    for path in files_under(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        masked = mask(text, secrets)
        if masked != text:
            path.write_text(masked, encoding="utf-8")
            leaked.append(path)
    return leaked
