"""Defense in depth: mask known secret values in what cdrunner prints, and check
(and, should one ever be there, mask) ansible-runner's kept artifacts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def mask_quietly(root: Path, values: Sequence[str]) -> None:
    """Mask values that are private but expected in the output (the DEPLOY_HOST
    addresses in an SSH error): no warning."""
    if values:
        for path in files_under(root):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            masked = mask(text, values)
            if masked != text:
                path.write_text(masked, encoding="utf-8")


CHECKSUM_KEYS = frozenset({"checksums", "checksum"})


def without_checksums(value: Any) -> Any:
    """value with every checksum(s) entry's content masked (the deploy lock reads
    app.env's SHA-256: a hash of the secrets is not published)."""
    if isinstance(value, dict):
        return {
            k: (masked_leaves(v) if k in CHECKSUM_KEYS else without_checksums(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [without_checksums(v) for v in value]
    return value


def masked_leaves(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: masked_leaves(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked_leaves(v) for v in value]
    return MASK if isinstance(value, str) and value else value


def redact_checksums(root: Path) -> None:
    """Mask checksums in ansible-runner's job events (JSON files)."""
    for path in sorted((root / "job_events").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError, json.JSONDecodeError):
            continue
        redacted = without_checksums(data)
        if redacted != data:
            path.write_text(json.dumps(redacted), encoding="utf-8")
