"""Files on the managed host: read one that may be missing, hash one, write one atomically.

Shared by the project's modules (library/, roles/*/library/). They import it as
``ansible.module_utils.melk_files``: ansible.cfg's ``module_utils`` names this directory,
and Ansible ships the file to the host inside each module that imports it. It runs on the
managed host, whose Python may be older than the controller's: keep it to syntax and
library calls of Python 3.8 (new-style types only inside annotations).
"""

from __future__ import annotations

import hashlib
import os
import tempfile

TEMPORARY_PREFIX = ".melk-tmp-"


def read_text(path: str) -> str | None:
    """The file's text, or None when there is no file (the one answer for a missing file).

    Line endings are kept as they are (no newline translation), so the text written back
    with write_atomic is the file byte for byte.
    """
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def file_sha256(path: str) -> str | None:
    """SHA-256 (hex) of the file's bytes, or None when there is no file."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(65536), b""):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def fsync_directory(directory: str) -> None:
    """Flush a directory's entries (a rename in it) to disk."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace path with text so that a reader, or a crash, sees the old file or the new one.

    The text goes to a temporary file beside path, is flushed to disk (fsync), gets its mode
    and is renamed over path; the directory is flushed last, so the rename itself survives
    a power cut. On any error the temporary file is removed and path is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    fsync_directory(directory)


def remove_file(path: str) -> bool:
    """Remove a file; False when it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
