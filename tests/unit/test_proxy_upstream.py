"""Unit tests for roles/edge_proxy/library/proxy_upstream.py: the switch's file handling
with real commands standing in for nginx (the Molecule edge_proxy scenario runs it
against nginx itself)."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
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


def test_documentation_is_yaml() -> None:
    import proxy_upstream

    doc = yaml.safe_load(proxy_upstream.DOCUMENTATION)
    yaml.safe_load(proxy_upstream.EXAMPLES)
    yaml.safe_load(proxy_upstream.RETURN)
    assert doc["module"] == "proxy_upstream"
    assert set(doc["options"]) == {"path", "content", "validate", "test_command", "reload_command"}
