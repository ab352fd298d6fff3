"""Unit tests for roles/edge_proxy/library/proxy_upstream.py: the switch's file handling
with real commands standing in for nginx (the Molecule edge_proxy scenario runs it
against nginx itself)."""

from __future__ import annotations

import locale
import stat
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import proxy_upstream
import pytest
from module_harness import run_module
from proxy_upstream import switch

OLD = "# release aaa\nserver 127.0.0.1:18001 max_fails=0;\n"
NEW = "# release bbb\nserver 127.0.0.1:18002 max_fails=0;\n"
VALIDATE = "grep -q server %s"
OK = ["true"]
BROKEN = ["sh", "-c", "echo 'unknown directive \"oops\" in /etc/nginx/conf.d/x.conf:1' >&2; exit 1"]


class Runner:
    """Runs each command for real and remembers the command lines."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    path = tmp_path / "melk-ai.upstream"
    path.write_text(OLD)
    return path


def do(
    path: Path,
    content: str = NEW,
    test: list[str] = OK,
    reload: list[str] = OK,
    check: bool = False,
):  # type: ignore[no-untyped-def]
    runner = Runner()
    return switch(str(path), content, VALIDATE, test, reload, check, runner), runner


def test_the_same_content_changes_nothing_and_reloads_nothing(upstream: Path) -> None:
    result, runner = do(upstream, OLD)
    assert result == {"changed": False, "reloaded": False}
    assert runner.calls == []


def test_a_switch_replaces_the_file_then_checks_then_reloads(upstream: Path) -> None:
    result, runner = do(upstream, reload=["echo", "reloaded"])
    assert result == {"changed": True, "reloaded": True}
    assert upstream.read_text() == NEW
    assert stat.S_IMODE(upstream.stat().st_mode) == 0o644
    assert runner.calls[0][:2] == ["grep", "-q"]
    assert runner.calls[1:] == [OK, ["echo", "reloaded"]]
    assert [p.name for p in upstream.parent.iterdir()] == [upstream.name], "no temporary file left"


def test_a_refused_upstream_changes_nothing(upstream: Path) -> None:
    result, runner = do(upstream, "not an upstream\n")
    assert result["failed"] is True
    assert "refused" in result["msg"]
    assert upstream.read_text() == OLD
    assert len(runner.calls) == 1, "neither the whole check nor a reload ran"


def test_an_invalid_configuration_puts_the_old_file_back(upstream: Path) -> None:
    result, runner = do(upstream, test=BROKEN)
    assert result["failed"] is True
    assert "nginx configuration on this host is invalid" in result["msg"]
    assert "/etc/nginx/conf.d/x.conf:1" in result["msg"]
    assert upstream.read_text() == OLD
    assert runner.calls[-1] == BROKEN, "no reload after a failed check"


def test_a_failed_reload_puts_the_old_file_back(upstream: Path) -> None:
    result, _runner = do(upstream, reload=BROKEN)
    assert result["failed"] is True
    assert "reload failed" in result["msg"]
    assert upstream.read_text() == OLD


def test_a_first_switch_that_fails_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "melk-ai.upstream"
    result, _runner = do(path, test=BROKEN)
    assert result["failed"] is True
    assert not path.exists()


def test_check_mode_reports_and_changes_nothing(upstream: Path) -> None:
    result, runner = do(upstream, check=True)
    assert result == {"changed": True, "reloaded": False}
    assert upstream.read_text() == OLD
    assert runner.calls == []


def test_validate_must_name_the_candidate(upstream: Path) -> None:
    result = switch(str(upstream), NEW, "nginx -t", OK, OK, False, Runner())
    assert result["failed"] is True
    assert upstream.read_text() == OLD


@pytest.mark.parametrize(
    ("old", "content", "validate", "check_mode", "action"),
    [
        (OLD, NEW, "nginx -t", False, proxy_upstream.REFUSE),
        (OLD, OLD, VALIDATE, False, proxy_upstream.KEEP),
        (OLD, OLD, VALIDATE, True, proxy_upstream.KEEP),
        (OLD, NEW, VALIDATE, True, proxy_upstream.REPORT),
        (OLD, NEW, VALIDATE, False, proxy_upstream.SWITCH),
        (None, NEW, VALIDATE, False, proxy_upstream.SWITCH),
        (None, "", VALIDATE, False, proxy_upstream.SWITCH),
    ],
)
def test_decide(
    old: str | None, content: str, validate: str, check_mode: bool, action: str
) -> None:
    assert proxy_upstream.decide(old, content, validate, check_mode) == action


def test_the_default_commands_check_nginx_then_reload_it_gracefully() -> None:
    """A reload lets old workers finish their requests; a restart would drop them."""
    spec = proxy_upstream.ARGUMENT_SPEC
    assert spec["test_command"]["default"] == ["nginx", "-t", "-q"]
    assert spec["reload_command"]["default"] == ["systemctl", "reload", "nginx"]


def test_a_reader_of_the_old_file_sees_it_whole_during_a_switch(upstream: Path) -> None:
    """The new upstream is a new file renamed over the old one, never the old one rewritten:
    nginx, or a crash, sees the old file or the new one."""
    with upstream.open() as reader:
        result, _runner = do(upstream)
        assert reader.read() == OLD
    assert result == {"changed": True, "reloaded": True}
    assert upstream.read_text() == NEW


def test_an_upstream_that_cannot_be_written_leaves_the_old_one(upstream: Path) -> None:
    with pytest.raises(UnicodeEncodeError):  # fails half-way through the text
        do(upstream, "server 127.0.0.1:18002;\n# \udcff\n")
    assert upstream.read_text() == OLD
    assert [p.name for p in upstream.parent.iterdir()] == [upstream.name]


def test_main_switches_with_the_given_commands(upstream: Path) -> None:
    args = {
        "path": str(upstream),
        "content": NEW,
        "validate": VALIDATE,
        "test_command": ["true"],
        "reload_command": ["true"],
    }
    result = run_module(proxy_upstream.main, args)
    assert (result["rc"], result["changed"], result["reloaded"]) == (0, True, True)
    assert upstream.read_text() == NEW
    failed = run_module(proxy_upstream.main, {**args, "content": OLD, "reload_command": BROKEN})
    assert (failed["rc"], failed["failed"], failed["reloaded"]) == (1, True, False)
    assert "reload failed" in failed["msg"]
    assert upstream.read_text() == NEW


# ------------------------------------------------ exact commands, messages and restores

ON_STDOUT = ["sh", "-c", "echo 'Job for nginx.service failed.'; exit 1"]
INVALID = (
    "edge proxy: the nginx configuration on this host is invalid, so the switch was not made "
    "and the old upstream is back; nginx -t says: "
)
RELOAD_FAILED = "edge proxy: the reload failed, the old upstream is back: "


@pytest.fixture
def ascii_locale() -> Iterator[None]:
    """A host whose locale is not UTF-8: a file opened without an explicit encoding
    would be written as ASCII there."""
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        assert locale.getpreferredencoding(False) != "UTF-8", "the locale did not change"
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


class Inspecting(Runner):
    """Also records, for the validate command, the candidate file it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.candidates: list[tuple[str, bytes, int]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str, str]:
        if argv[0] == "grep":
            candidate = Path(argv[-1])
            mode = stat.S_IMODE(candidate.stat().st_mode)
            self.candidates.append((str(candidate), candidate.read_bytes(), mode))
        return super().__call__(argv)


def test_the_exact_commands_in_order_with_the_candidate_beside_the_file(upstream: Path) -> None:
    """The candidate lies beside the upstream (same file system, same permissions as the
    file nginx will read), holds the new text, mode 0644, and is gone afterwards."""
    runner = Inspecting()
    test, reload = ["true", "whole-check"], ["true", "graceful-reload"]
    result = switch(str(upstream), NEW, VALIDATE, test, reload, False, runner)
    assert result == {"changed": True, "reloaded": True}
    [(candidate, text, mode)] = runner.candidates
    assert runner.calls == [["grep", "-q", "server", candidate], test, reload]
    assert Path(candidate).parent == upstream.parent
    assert Path(candidate).name.startswith(".proxy-upstream-check-")
    assert (text, mode) == (NEW.encode("utf-8"), 0o644)
    assert not Path(candidate).exists()


def test_a_switch_writes_utf8_whatever_the_locale(upstream: Path, ascii_locale: None) -> None:
    content = "# release für café\nserver 127.0.0.1:18002;\n"
    runner = Inspecting()
    result = switch(str(upstream), content, VALIDATE, OK, OK, False, runner)
    assert result == {"changed": True, "reloaded": True}
    assert runner.candidates[0][1] == content.encode("utf-8")
    assert upstream.read_bytes() == content.encode("utf-8")


def test_validate_without_the_candidate_is_refused_with_its_reason(upstream: Path) -> None:
    runner = Runner()
    result = switch(str(upstream), NEW, "nginx -t", OK, OK, False, runner)
    assert result == {
        "failed": True,
        "changed": False,
        "reloaded": False,
        "msg": "validate must contain %s",
    }
    assert runner.calls == []
    assert upstream.read_text() == OLD


def test_a_refused_candidate_fails_with_the_checkers_words(upstream: Path, tmp_path: Path) -> None:
    checker = tmp_path / "check-upstream"
    checker.write_text('#!/bin/sh\necho "no server line in $1" >&2\nexit 1\n')
    checker.chmod(0o755)
    runner = Inspecting()
    result = switch(str(upstream), NEW, f"{checker} %s", OK, OK, False, runner)
    candidate = runner.calls[0][-1]
    assert runner.calls == [[str(checker), candidate]]
    assert result == {
        "failed": True,
        "changed": False,
        "reloaded": False,
        "msg": "edge proxy: the new upstream was refused, nothing changed: "
        f"no server line in {candidate}",
    }
    assert upstream.read_text() == OLD
    assert [p.name for p in upstream.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("test", "reload", "msg"),
    [
        (BROKEN, OK, INVALID + 'unknown directive "oops" in /etc/nginx/conf.d/x.conf:1'),
        (ON_STDOUT, OK, INVALID + "Job for nginx.service failed."),
        (OK, BROKEN, RELOAD_FAILED + 'unknown directive "oops" in /etc/nginx/conf.d/x.conf:1'),
        (OK, ON_STDOUT, RELOAD_FAILED + "Job for nginx.service failed."),
    ],
)
def test_every_failure_after_the_write_puts_the_old_file_back_byte_for_byte(
    tmp_path: Path, test: list[str], reload: list[str], msg: str
) -> None:
    path = tmp_path / "melk-ai.upstream"
    old = "# release äää\r\nserver 127.0.0.1:18001 max_fails=0;\n".encode()
    path.write_bytes(old)
    path.chmod(0o644)
    result, runner = do(path, test=test, reload=reload)
    assert result == {"failed": True, "changed": False, "reloaded": False, "msg": msg}
    assert path.read_bytes() == old
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert runner.calls[1:] == ([test] if test != OK else [test, reload])
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temporary file left"


def module_args(path: Path, content: str, **commands: object) -> dict[str, object]:
    return {
        "path": str(path),
        "content": content,
        "validate": "false %s",  # any check that runs fails
        "test_command": BROKEN,
        "reload_command": BROKEN,
        **commands,
    }


@pytest.mark.parametrize(("content", "changed"), [(NEW, True), (OLD, False)])
def test_main_in_check_mode_reports_and_runs_nothing(
    upstream: Path, content: str, changed: bool
) -> None:
    before = upstream.stat()
    result = run_module(
        proxy_upstream.main, {**module_args(upstream, content), "_ansible_check_mode": True}
    )
    assert (result["rc"], result["changed"], result["reloaded"]) == (0, changed, False)
    assert "skipped" not in result
    assert upstream.read_text() == OLD
    assert upstream.stat().st_mtime_ns == before.st_mtime_ns


def test_main_with_a_file_that_already_says_this_changes_and_runs_nothing(upstream: Path) -> None:
    before = upstream.stat()
    result = run_module(proxy_upstream.main, module_args(upstream, OLD))
    assert (result["rc"], result["changed"], result["reloaded"]) == (0, False, False)
    assert upstream.read_text() == OLD
    assert (upstream.stat().st_ino, upstream.stat().st_mtime_ns) == (
        before.st_ino,
        before.st_mtime_ns,
    )
