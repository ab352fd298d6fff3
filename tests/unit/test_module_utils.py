"""Unit tests for module_utils/: the code the modules share (files, docker, the glue)."""

from __future__ import annotations

import hashlib
import locale
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import melk_files
from ansible.module_utils.melk_docker import (
    STATE_FORMAT,
    failure,
    image_rm_argv,
    image_tags_argv,
    missing,
    parse_state,
    parse_tags,
    rm_argv,
    run_argv,
    state_argv,
    stop_argv,
)
from ansible.module_utils.melk_files import (
    file_sha256,
    read_text,
    remove_file,
    write_atomic,
)
from ansible.module_utils.melk_module import finish, module_runner, one_line
from hypothesis import given
from hypothesis import strategies as st

# --------------------------------------------------------------------------- melk_files


def test_read_text_answers_none_for_a_missing_file_and_text_otherwise(tmp_path: Path) -> None:
    assert read_text(str(tmp_path / "none")) is None
    (tmp_path / "empty").write_text("")
    assert read_text(str(tmp_path / "empty")) == ""
    (tmp_path / "some").write_text("a\nb\n")
    assert read_text(str(tmp_path / "some")) == "a\nb\n"


def test_read_text_keeps_line_endings_so_a_write_back_is_byte_for_byte(tmp_path: Path) -> None:
    target = tmp_path / "crlf"
    data = b"a\r\nb\rc\n"
    target.write_bytes(data)
    text = read_text(str(target))
    assert text == "a\r\nb\rc\n"
    write_atomic(str(target), text)
    assert target.read_bytes() == data


def test_file_sha256(tmp_path: Path) -> None:
    assert file_sha256(str(tmp_path / "none")) is None
    data = os.urandom(200_000)  # more than one block
    (tmp_path / "blob").write_bytes(data)
    assert file_sha256(str(tmp_path / "blob")) == hashlib.sha256(data).hexdigest()


def test_write_atomic_creates_and_replaces_with_mode_0644(tmp_path: Path) -> None:
    target = tmp_path / "releases.json"
    write_atomic(str(target), "one\n")
    assert target.read_text() == "one\n"
    write_atomic(str(target), "two\n")
    assert target.read_text() == "two\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    write_atomic(str(target), "three\n", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["releases.json"], "no temporary file left"


def test_a_reader_of_the_old_file_sees_it_whole(tmp_path: Path) -> None:
    target = tmp_path / "melk-ai.upstream"
    target.write_text("old\n")
    with target.open() as reader:
        write_atomic(str(target), "new\n")
        assert reader.read() == "old\n"
    assert target.read_text() == "new\n"


def test_a_write_that_fails_half_way_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "releases.json"
    target.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(str(target), "new and then a lone surrogate \udcff\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["releases.json"], "no temporary file left"


def test_write_atomic_flushes_the_file_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the two fsyncs a power cut can leave an empty file, or the old one."""
    target = tmp_path / "releases.json"
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(handle: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{handle}")))
        real_fsync(handle)

    def replace(source: str, destination: str) -> None:
        events.append(("replace", destination))
        real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomic(str(target), "new\n")
    assert [kind for kind, _path in events] == ["fsync", "replace", "fsync"]
    assert Path(events[0][1]).parent == tmp_path
    assert Path(events[0][1]).name.startswith(melk_files.TEMPORARY_PREFIX)
    assert events[1][1] == str(target)
    assert events[2][1] == str(tmp_path)


@pytest.fixture
def ascii_locale() -> Iterator[None]:
    """A host whose locale is not UTF-8 (LANG=C without Python's coercion): a file opened
    without an explicit encoding would then be read and written as ASCII."""
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        assert locale.getpreferredencoding(False) != "UTF-8", "the locale did not change"
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


NON_ASCII = "# release für café\nserver 127.0.0.1:18002;\n"


def test_read_text_reads_utf8_whatever_the_locale(tmp_path: Path, ascii_locale: None) -> None:
    target = tmp_path / "melk-ai.upstream"
    target.write_bytes(NON_ASCII.encode("utf-8"))
    assert read_text(str(target)) == NON_ASCII


def test_write_atomic_writes_utf8_whatever_the_locale(tmp_path: Path, ascii_locale: None) -> None:
    target = tmp_path / "melk-ai.upstream"
    write_atomic(str(target), NON_ASCII)
    assert target.read_bytes() == NON_ASCII.encode("utf-8")


def test_remove_file(tmp_path: Path) -> None:
    target = tmp_path / "deploy.lock"
    target.write_text("x")
    assert remove_file(str(target)) is True
    assert not target.exists()
    assert remove_file(str(target)) is False


# --------------------------------------------------------------------------- melk_docker


def test_run_argv_puts_every_value_in_its_own_argument() -> None:
    argv = run_argv(
        "melk-ai-blue",
        "reg.example/melk-ai:abc",
        ["127.0.0.1:18001:8000"],
        "/srv/app.env",
        {"io.melk.sha": "abc", "note": "a b; $(touch /tmp/x)"},
        "unless-stopped",
        7,
    )
    assert argv == [
        "docker", "run", "--detach", "--pull", "never", "--name", "melk-ai-blue",
        "--restart", "unless-stopped", "--stop-timeout", "7",
        "--env-file", "/srv/app.env",
        "--publish", "127.0.0.1:18001:8000",
        "--label", "io.melk.sha=abc",
        "--label", "note=a b; $(touch /tmp/x)",
        "reg.example/melk-ai:abc",
    ]  # fmt: skip


@given(labels=st.dictionaries(st.text(min_size=1), st.text(), max_size=5))
def test_run_argv_keeps_labels_intact(labels: dict[str, str]) -> None:
    argv = run_argv("n", "img", [], None, labels, "no", 10)
    given_labels = [argv[i + 1] for i, item in enumerate(argv) if item == "--label"]
    assert given_labels == [f"{key}={labels[key]}" for key in sorted(labels)]
    assert argv[-1] == "img"
    assert "--env-file" not in argv


def test_the_other_command_lines_exactly() -> None:
    assert rm_argv("melk-ai-blue") == ["docker", "rm", "--force", "melk-ai-blue"]
    assert stop_argv("melk-ai-blue", 5) == ["docker", "stop", "--time", "5", "melk-ai-blue"]
    assert state_argv("melk-ai-blue") == [
        "docker", "inspect", "--type", "container", "--format",
        "{{.State.Running}} {{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}",
        "melk-ai-blue",
    ]  # fmt: skip
    assert STATE_FORMAT.count("{{") == 4, "four fields: never the config with the app's env"
    assert image_rm_argv("reg/app:abc") == ["docker", "image", "rm", "reg/app:abc"]
    assert image_tags_argv("reg/app") == [
        "docker",
        "image",
        "ls",
        "--format",
        "{{.Tag}}",
        "reg/app",
    ]


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        ("Error: No such container: melk-ai-blue", True),
        ("Error response from daemon: No such container: melk-ai-blue", True),
        ("Error response from daemon: No such image: x:y", True),
        ("Error response from daemon: driver failed programming external connectivity", False),
    ],
)
def test_missing(stderr: str, expected: bool) -> None:
    assert missing(stderr) is expected


def test_failure() -> None:
    assert failure("removing container x", 125, "  boom\n") == (
        "removing container x failed (exit 125): boom"
    )


def state(running: bool, restarts: int, status: str, exit_code: int | None) -> dict[str, Any]:
    return {"running": running, "restarts": restarts, "status": status, "exit_code": exit_code}


@pytest.mark.parametrize(
    ("rc", "stdout", "expected"),
    [
        (0, "true 0 running 0\n", state(True, 0, "running", 0)),
        (0, "true 2 running 0", state(True, 2, "running", 0)),
        (0, "false 0 exited -1", state(False, 0, "exited", -1)),
        (0, "false x dead ?", state(False, -1, "dead", None)),
        (1, "true 0 running 0", {}),
        (0, "garbage", {}),
    ],
)
def test_parse_state(rc: int, stdout: str, expected: dict[str, Any]) -> None:
    assert parse_state(rc, stdout) == expected


def test_parse_tags() -> None:
    assert parse_tags("def\n<none>\nabc\n") == ["abc", "def"]
    assert parse_tags("") == []


# --------------------------------------------------------------------------- melk_module


def test_one_line() -> None:
    assert one_line("out\n", "") == "out"
    assert one_line("out", "err\n  on two\nlines\n") == "err on two lines"


class FakeModule:
    """What finish() and module_runner() use of AnsibleModule."""

    def __init__(self) -> None:
        self.warned: list[str] = []
        self.ended: tuple[str, dict[str, Any]] | None = None
        self.commands: list[list[str]] = []

    def warn(self, text: str) -> None:
        self.warned.append(text)

    def exit_json(self, **result: Any) -> None:
        self.ended = ("exit", result)
        raise SystemExit(0)

    def fail_json(self, **result: Any) -> None:
        self.ended = ("fail", result)
        raise SystemExit(1)

    def run_command(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.commands.append(list(argv))
        return 3, "out", "err"


@pytest.mark.parametrize(
    ("result", "ended", "warned"),
    [
        ({"changed": True}, ("exit", {"changed": True}), []),
        ({"changed": False, "warnings": ["w1", "w2"]}, ("exit", {"changed": False}), ["w1", "w2"]),
        ({"failed": True, "msg": "m", "warnings": ["w"]}, ("fail", {"msg": "m"}), ["w"]),
        ({"failed": False, "msg": "m"}, ("exit", {"msg": "m"}), []),
    ],
)
def test_finish(
    result: dict[str, Any], ended: tuple[str, dict[str, Any]], warned: list[str]
) -> None:
    module = FakeModule()
    with pytest.raises(SystemExit):
        finish(module, result)
    assert module.ended == ended
    assert module.warned == warned


def test_module_runner_passes_the_argv_as_a_list() -> None:
    module = FakeModule()
    assert module_runner(module)(("docker", "ps")) == (3, "out", "err")
    assert module.commands == [["docker", "ps"]]
