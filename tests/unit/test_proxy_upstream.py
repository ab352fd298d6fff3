"""Unit tests for roles/edge_proxy/library/proxy_upstream.py: the switch's file handling,
with real commands standing in for nft (where nft is installed, its dry run checks the
candidate too; nothing here applies a rule: the Molecule edge_proxy scenario does)."""

from __future__ import annotations

import locale
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import proxy_upstream
import pytest
from edge_upstream import upstream_text
from module_harness import run_module
from proxy_upstream import switch

FRONT = "172.17.0.1:18000"
OLD = upstream_text("melk-ai", FRONT, "172.17.0.3:8000", "aaaaaaa", "blue")
NEW = upstream_text("melk-ai", FRONT, "172.17.0.4:8000", "bbbbbbb", "green")
VALIDATE = "grep -q edge_proxy %s"
OK = ["true"]
NO_CHECK: list[str] = []
APPLY = ["true", "apply"]
BROKEN = ["sh", "-c", "echo 'Error: Could not process rule: No such file or directory' >&2; exit 1"]
ON_STDOUT = ["sh", "-c", "echo 'netlink: Error: cannot open socket'; exit 1"]
BROKEN_SAYS = "Error: Could not process rule: No such file or directory"
REFUSED = "edge proxy: the new switch file was refused, nothing changed: "
INVALID = (
    "edge proxy: the configuration on this host is invalid, so the switch was not made "
    "and the old switch file is back; the check says: "
)
APPLY_FAILED = "edge proxy: applying the switch failed, the old switch file is back: "


class Runner:
    """Runs each command for real and remembers the command lines."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr


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


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    path = tmp_path / "melk-ai.upstream"
    path.write_text(OLD)
    return path


def do(
    path: Path,
    content: str = NEW,
    test: list[str] = NO_CHECK,
    reload: list[str] = APPLY,
    check: bool = False,
) -> tuple[dict[str, object], Inspecting]:
    runner = Inspecting()
    return switch(str(path), content, VALIDATE, test, reload, check, runner, wall(runner)), runner


def wall(runner: Inspecting) -> Callable[[], float]:
    """A clock that reads how many commands have run: applied_at tells when it was read."""
    return lambda: float(len(runner.calls))


def switched(runner: Inspecting) -> dict[str, object]:
    """The result of a switch that applied the file, its time read after every command."""
    return {"changed": True, "reloaded": True, "applied_at": float(len(runner.calls))}


def validated(runner: Inspecting) -> list[str]:
    """The validate command line as it ran, with the candidate it was given."""
    [(candidate, _text, _mode)] = runner.candidates
    return ["grep", "-q", "edge_proxy", candidate]


# --------------------------------------------------------------------------- the defaults


def test_the_defaults_check_nothing_more_and_must_be_told_how_to_apply() -> None:
    """The nftables switch has no whole-configuration check (the candidate's nft -c is the
    check) and no default way to apply: the caller names the file to nft -f."""
    spec = proxy_upstream.ARGUMENT_SPEC
    assert spec["test_command"] == {"type": "list", "elements": "str", "default": []}
    assert spec["reload_command"] == {"type": "list", "elements": "str", "required": True}
    assert "default" not in spec["reload_command"]


def test_a_switch_checks_the_candidate_replaces_the_file_and_applies_it(upstream: Path) -> None:
    result, runner = do(upstream)
    assert result == switched(runner)
    assert upstream.read_text() == NEW
    assert stat.S_IMODE(upstream.stat().st_mode) == 0o644
    assert runner.calls == [validated(runner), APPLY], "no whole check when none is given"
    assert [p.name for p in upstream.parent.iterdir()] == [upstream.name], "no temporary file left"


def test_a_test_command_when_given_runs_between_the_write_and_the_apply(upstream: Path) -> None:
    test = ["sh", "-c", f'grep -q "dnat to 172.17.0.4:8000" {upstream}']
    result, runner = do(upstream, test=test)
    assert result == switched(runner)
    assert runner.calls == [validated(runner), test, APPLY]


def test_the_same_content_changes_nothing_and_applies_nothing(upstream: Path) -> None:
    result, runner = do(upstream, OLD)
    assert result == {"changed": False, "reloaded": False}
    assert runner.calls == []


def test_a_first_switch_writes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "melk-ai.upstream"
    result, runner = do(path)
    assert result == switched(runner)
    assert path.read_text() == NEW
    assert runner.calls == [validated(runner), APPLY]


def test_a_refused_switch_file_changes_nothing(upstream: Path) -> None:
    result, runner = do(upstream, "not a switch file\n")
    assert result == {"failed": True, "changed": False, "reloaded": False, "msg": REFUSED}
    assert upstream.read_text() == OLD
    assert len(runner.calls) == 1, "neither a whole check nor an apply ran"


def test_a_failed_apply_puts_the_old_file_back(upstream: Path) -> None:
    result, runner = do(upstream, reload=BROKEN)
    assert result == {
        "failed": True,
        "changed": False,
        "reloaded": False,
        "msg": APPLY_FAILED + BROKEN_SAYS,
    }
    assert upstream.read_text() == OLD
    assert runner.calls == [validated(runner), BROKEN]


def test_an_invalid_configuration_puts_the_old_file_back_and_applies_nothing(
    upstream: Path,
) -> None:
    result, runner = do(upstream, test=BROKEN)
    assert result["msg"] == INVALID + BROKEN_SAYS
    assert upstream.read_text() == OLD
    assert runner.calls == [validated(runner), BROKEN], "no apply after a failed check"


def test_a_first_switch_that_fails_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "melk-ai.upstream"
    result, _runner = do(path, reload=BROKEN)
    assert result["failed"] is True
    assert not path.exists()


def test_check_mode_reports_and_changes_nothing(upstream: Path) -> None:
    result, runner = do(upstream, check=True)
    assert result == {"changed": True, "reloaded": False}
    assert upstream.read_text() == OLD
    assert runner.calls == []


@pytest.mark.parametrize(
    ("old", "content", "validate", "check_mode", "action"),
    [
        (OLD, NEW, "nft -c -f", False, proxy_upstream.REFUSE),
        (OLD, OLD, "nft -c -f", False, proxy_upstream.REFUSE),
        (OLD, OLD, VALIDATE, False, proxy_upstream.KEEP),
        (OLD, OLD, VALIDATE, True, proxy_upstream.KEEP),
        (OLD, NEW, VALIDATE, True, proxy_upstream.REPORT),
        (OLD, NEW, VALIDATE, False, proxy_upstream.SWITCH),
        (None, NEW, VALIDATE, False, proxy_upstream.SWITCH),
        (None, "", VALIDATE, False, proxy_upstream.SWITCH),
        ("", "", VALIDATE, False, proxy_upstream.KEEP),
    ],
)
def test_decide(
    old: str | None, content: str, validate: str, check_mode: bool, action: str
) -> None:
    assert proxy_upstream.decide(old, content, validate, check_mode) == action


def test_a_reader_of_the_old_file_sees_it_whole_during_a_switch(upstream: Path) -> None:
    """The new file is renamed over the old one, never the old one rewritten: the boot
    unit, a deploy reading it, or a crash, sees the old file or the new one."""
    with upstream.open() as reader:
        result, runner = do(upstream)
        assert reader.read() == OLD
    assert result == switched(runner)
    assert upstream.read_text() == NEW


def test_a_switch_file_that_cannot_be_written_leaves_the_old_one(upstream: Path) -> None:
    with pytest.raises(UnicodeEncodeError):  # fails half-way through the text
        do(upstream, NEW + "# \udcff\n")
    assert upstream.read_text() == OLD
    assert [p.name for p in upstream.parent.iterdir()] == [upstream.name]


# ------------------------------------------------ exact commands, messages and restores


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


def test_the_exact_commands_in_order_with_the_candidate_beside_the_file(upstream: Path) -> None:
    """The candidate lies beside the switch file (same file system, same permissions as the
    file nft will read), holds the new text, mode 0644, and is gone afterwards."""
    runner = Inspecting()
    test, reload = ["true", "whole-check"], ["true", "nft", "-f", str(upstream)]
    result = switch(str(upstream), NEW, VALIDATE, test, reload, False, runner, wall(runner))
    assert result == switched(runner)
    [(candidate, text, mode)] = runner.candidates
    assert runner.calls == [["grep", "-q", "edge_proxy", candidate], test, reload]
    assert Path(candidate).parent == upstream.parent
    assert Path(candidate).name.startswith(".proxy-upstream-check-")
    assert (text, mode) == (NEW.encode("utf-8"), 0o644)
    assert not Path(candidate).exists()


def test_a_switch_writes_utf8_whatever_the_locale(upstream: Path, ascii_locale: None) -> None:
    content = "# für café\n" + NEW
    runner = Inspecting()
    result = switch(str(upstream), content, VALIDATE, NO_CHECK, OK, False, runner, wall(runner))
    assert result == switched(runner)
    assert runner.candidates[0][1] == content.encode("utf-8")
    assert upstream.read_bytes() == content.encode("utf-8")


def test_validate_without_the_candidate_is_refused_with_its_reason(upstream: Path) -> None:
    runner = Runner()
    result = switch(str(upstream), NEW, "nft -c -f", NO_CHECK, OK, False, runner)
    assert result == {
        "failed": True,
        "changed": False,
        "reloaded": False,
        "msg": "validate must contain %s",
    }
    assert runner.calls == []
    assert upstream.read_text() == OLD


def test_a_refused_candidate_fails_with_the_checkers_words(upstream: Path, tmp_path: Path) -> None:
    checker = tmp_path / "check-switch-file"
    checker.write_text('#!/bin/sh\necho "$1:4:1-3: Error: syntax error" >&2\nexit 1\n')
    checker.chmod(0o755)
    runner = Runner()
    result = switch(str(upstream), NEW, f"{checker} %s", NO_CHECK, OK, False, runner)
    candidate = runner.calls[0][-1]
    assert runner.calls == [[str(checker), candidate]]
    assert result == {
        "failed": True,
        "changed": False,
        "reloaded": False,
        "msg": REFUSED + f"{candidate}:4:1-3: Error: syntax error",
    }
    assert upstream.read_text() == OLD
    assert [p.name for p in upstream.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("test", "reload", "msg", "ran"),
    [
        (BROKEN, OK, INVALID + BROKEN_SAYS, [BROKEN]),
        (ON_STDOUT, OK, INVALID + "netlink: Error: cannot open socket", [ON_STDOUT]),
        (NO_CHECK, BROKEN, APPLY_FAILED + BROKEN_SAYS, [BROKEN]),
        (OK, BROKEN, APPLY_FAILED + BROKEN_SAYS, [OK, BROKEN]),
        (NO_CHECK, ON_STDOUT, APPLY_FAILED + "netlink: Error: cannot open socket", [ON_STDOUT]),
    ],
)
def test_every_failure_after_the_write_puts_the_old_file_back_byte_for_byte(
    tmp_path: Path, test: list[str], reload: list[str], msg: str, ran: list[list[str]]
) -> None:
    path = tmp_path / "melk-ai.upstream"
    old = ("# release äää\r\n" + OLD).encode()
    path.write_bytes(old)
    path.chmod(0o644)
    result, runner = do(path, test=test, reload=reload)
    assert result == {"failed": True, "changed": False, "reloaded": False, "msg": msg}
    assert path.read_bytes() == old
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert runner.calls == [validated(runner), *ran]
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temporary file left"


# --------------------------------------------------------------------------- main()


@pytest.fixture
def recorder(tmp_path: Path) -> Path:
    """A command that writes its arguments to a log beside it and succeeds."""
    script = tmp_path / "record"
    script.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "log"}\n')
    script.chmod(0o755)
    return script


def logged(recorder: Path) -> list[str]:
    log = recorder.parent / "log"
    return log.read_text().splitlines() if log.exists() else []


def test_main_checks_the_candidate_and_applies_the_file_without_a_test_command(
    upstream: Path, recorder: Path
) -> None:
    args = {
        "path": str(upstream),
        "content": NEW,
        "validate": f"{recorder} check %s",
        "reload_command": [str(recorder), "apply", str(upstream)],
    }
    result = run_module(proxy_upstream.main, args)
    assert (result["rc"], result["changed"], result["reloaded"]) == (0, True, True)
    assert result["invocation"]["module_args"]["test_command"] == []
    [check, apply] = logged(recorder)
    assert check.startswith(f"check {upstream.parent}/.proxy-upstream-check-")
    assert apply == f"apply {upstream}"
    assert upstream.read_text() == NEW


def test_main_fails_with_the_old_file_back_when_the_apply_fails(upstream: Path) -> None:
    args = {"path": str(upstream), "content": NEW, "validate": VALIDATE, "reload_command": BROKEN}
    failed = run_module(proxy_upstream.main, args)
    assert (failed["rc"], failed["failed"], failed["changed"], failed["reloaded"]) == (
        1,
        True,
        False,
        False,
    )
    assert failed["msg"] == APPLY_FAILED + BROKEN_SAYS
    assert upstream.read_text() == OLD


def test_main_requires_a_reload_command(upstream: Path) -> None:
    args = {"path": str(upstream), "content": NEW, "validate": VALIDATE}
    failed = run_module(proxy_upstream.main, args)
    assert (failed["rc"], failed["msg"]) == (1, "missing required arguments: reload_command")
    assert upstream.read_text() == OLD


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


# --------------------------------------------------------------------------- with nft -c


@pytest.fixture
def nft(tmp_path: Path) -> str:
    """nft, which make testbed installs on the host; a test that needs it fails (never
    skips) where nft is missing or cannot check a transaction (these run in unit-docker)."""
    found = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail(
            "nft is not installed (make testbed installs nftables): "
            "the candidate was not checked by nft"
        )
    probe = tmp_path / "probe.nft"
    probe.write_text("add table ip edge_proxy\n")
    done = subprocess.run([found, "-c", "-f", str(probe)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"nft -c cannot check a transaction here: {done.stderr.strip()}")
    return found


@pytest.mark.docker  # needs nft, which make testbed installs (unit-docker)
@pytest.mark.parametrize("content", [NEW, upstream_text("melk-ai", FRONT)])
def test_nft_takes_the_candidate(upstream: Path, nft: str, content: str) -> None:
    runner = Runner()
    before = time.time()
    result = switch(str(upstream), content, f"{nft} -c -f %s", NO_CHECK, OK, False, runner)
    applied_at = result.pop("applied_at")
    assert isinstance(applied_at, float)
    assert before <= applied_at <= time.time()  # the host's wall clock
    assert result == {"changed": True, "reloaded": True}
    assert upstream.read_text() == content


@pytest.mark.docker  # needs nft, which make testbed installs (unit-docker)
def test_nft_refuses_a_broken_candidate_in_its_words(upstream: Path, nft: str) -> None:
    broken = NEW.replace("dnat to", "dnat too")
    runner = Runner()
    result = switch(str(upstream), broken, f"{nft} -c -f %s", NO_CHECK, OK, False, runner)
    assert result["failed"] is True
    assert str(result["msg"]).startswith(REFUSED + runner.calls[0][-1])
    assert "syntax error" in str(result["msg"])
    assert runner.calls == [[nft, "-c", "-f", runner.calls[0][-1]]], "nothing applied"
    assert upstream.read_text() == OLD
