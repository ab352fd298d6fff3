"""Unit tests for roles/edge_proxy/library/proxy_upstream.py: the switch's file handling
with real commands standing in for nginx (the Molecule edge_proxy scenario runs it
against nginx itself)."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Sequence
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
