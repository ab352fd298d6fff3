"""Unit tests for library/deploy_lock.py: the pure decisions and run() on a real directory."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import deploy_lock
import pytest
from ansible.module_utils import melk_lock
from ansible.module_utils.melk_lock import (
    ABSENT,
    CORRUPT,
    CREATE,
    FOREIGN,
    HELD,
    KEEP,
    REMOVE,
    decide,
    lock_record,
    parse_lock,
    parse_time,
)
from deploy_lock import age_text, format_held_message, params_error, probe_url, run, with_health
from module_harness import run_module

NOW = datetime(2026, 11, 27, 4, 0, 0, tzinfo=UTC)
HOLDER = {
    "owner": "alice@ctl",
    "run_id": "run-a",
    "purpose": "rollback",
    "since": "2026-11-27T03:47:48Z",
    "pid_host": "app1",
}

# --------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize(
    ("existing", "state", "run_id", "corrupt", "action"),
    [
        (None, "acquire", "run-a", False, CREATE),
        (HOLDER, "acquire", "run-a", False, KEEP),
        (HOLDER, "acquire", "run-b", False, HELD),
        ({"owner": "x"}, "acquire", "run-b", False, HELD),
        (None, "acquire", "run-b", True, CORRUPT),
        (None, "release", "run-a", False, ABSENT),
        (HOLDER, "release", "run-a", False, REMOVE),
        (HOLDER, "release", "run-b", False, FOREIGN),
        (None, "release", "run-a", True, FOREIGN),
        (None, "break", None, False, ABSENT),
        (HOLDER, "break", None, False, REMOVE),
        (None, "break", None, True, REMOVE),
    ],
)
def test_decide(
    existing: dict[str, Any] | None, state: str, run_id: str | None, corrupt: bool, action: str
) -> None:
    assert decide(existing, state, run_id, corrupt=corrupt) == action


def test_decide_refuses_unknown_state() -> None:
    with pytest.raises(ValueError, match="unknown state"):
        decide(None, "steal", "run-a")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "an unknown time"),
        (-5, "0s"),
        (0, "0s"),
        (45.9, "45s"),
        (60, "1m 0s"),
        (192, "3m 12s"),
        (7500, "2h 5m"),
        (86400 + 3 * 3600 + 59, "1d 3h"),
    ],
)
def test_age_text(seconds: float | None, text: str) -> None:
    assert age_text(seconds) == text


def test_format_held_message_exact() -> None:
    assert format_held_message("/srv/app/deploy.lock", HOLDER, NOW) == (
        "deploy lock /srv/app/deploy.lock is held by alice@ctl (rollback, run run-a) since "
        "2026-11-27T03:47:48Z (12m 12s ago). Another deploy or rollback is running on this "
        "host. If that run is dead, break the lock with: -e deploy_lock_break=true"
    )


def test_format_held_message_with_missing_fields() -> None:
    message = format_held_message("/l", {"since": "yesterday"}, NOW)
    assert message.startswith("deploy lock /l is held by ? (?, run ?) since yesterday (an unknown")


def test_parse_time() -> None:
    assert parse_time("2026-11-27T03:47:48Z") == datetime(2026, 11, 27, 3, 47, 48, tzinfo=UTC)
    assert parse_time("2026-11-27T03:47:48+00:00") == datetime(2026, 11, 27, 3, 47, 48, tzinfo=UTC)
    assert parse_time("nope") is None
    assert parse_time(5) is None


def test_lock_record_and_parse() -> None:
    record = lock_record("alice@ctl", "run-a", "deploy", NOW, "app1")
    assert record == {
        "owner": "alice@ctl",
        "run_id": "run-a",
        "purpose": "deploy",
        "since": "2026-11-27T04:00:00Z",
        "pid_host": "app1",
    }
    assert parse_lock(json.dumps(record)) == record
    for text, reason in [("", "empty"), ("{", "not valid JSON"), ("[1]", "not a JSON object")]:
        with pytest.raises(ValueError, match=reason):
            parse_lock(text)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"path": "/l", "state": "acquire", "owner": "o", "run_id": "r"}, ""),
        ({"path": "/l", "state": "acquire", "owner": "o"}, "state=acquire requires run_id"),
        ({"path": "/l", "state": "acquire"}, "state=acquire requires owner and run_id"),
        ({"path": "/l", "state": "release"}, "state=release requires run_id"),
        ({"path": "/l", "state": "release", "run_id": "r"}, ""),
        ({"path": "/l", "state": "break"}, ""),
        ({"path": "", "state": "break"}, "path is required"),
        ({"path": "/l", "state": "steal"}, "state must be one of"),
    ],
)
def test_params_error(params: dict[str, Any], error: str) -> None:
    assert params_error(params).startswith(error)
    assert bool(params_error(params)) == bool(error)


# --------------------------------------------------------------------------- run() on files


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "deploy.lock"


def acquire(
    path: Path, run_id: str = "run-a", owner: str = "alice@ctl", check: bool = False
) -> dict[str, Any]:
    params = {
        "path": str(path),
        "state": "acquire",
        "owner": owner,
        "run_id": run_id,
        "purpose": "deploy",
    }
    return run(params, check_mode=check, now=NOW)


def release(path: Path, run_id: str = "run-a", check: bool = False) -> dict[str, Any]:
    return run({"path": str(path), "state": "release", "run_id": run_id}, check_mode=check)


def break_lock(path: Path, check: bool = False) -> dict[str, Any]:
    return run({"path": str(path), "state": "break"}, check_mode=check)


def test_acquire_creates_the_file(lock_path: Path) -> None:
    result = acquire(lock_path)
    assert result["changed"] is True
    assert "failed" not in result
    on_disk = json.loads(lock_path.read_text())
    assert on_disk == result["lock"]
    assert on_disk["owner"] == "alice@ctl"
    assert on_disk["run_id"] == "run-a"
    assert on_disk["purpose"] == "deploy"
    assert on_disk["since"] == "2026-11-27T04:00:00Z"
    assert on_disk["pid_host"]
    assert lock_path.stat().st_mode & 0o777 == 0o644 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_second_acquire_by_another_run_fails(lock_path: Path) -> None:
    acquire(lock_path)
    before = lock_path.read_text()
    result = acquire(lock_path, run_id="run-b", owner="bob@ctl")
    assert result["failed"] is True
    assert result["changed"] is False
    assert "alice@ctl" in result["msg"]
    assert "deploy_lock_break" in result["msg"]
    assert result["msg"].startswith(
        f"deploy lock {lock_path} is held by alice@ctl (deploy, run run-a)"
    )
    assert result["lock"]["owner"] == "alice@ctl"
    assert lock_path.read_text() == before


@pytest.mark.parametrize("exists", [True, False])
def test_acquire_reads_the_state_file_under_the_lock(lock_path: Path, exists: bool) -> None:
    state = lock_path.parent / "releases.json"
    if exists:
        state.write_text('{"current": null}\n')
    other = lock_path.parent / "missing.upstream"
    params = {
        "path": str(lock_path),
        "owner": "a@c",
        "run_id": "r",
        "read": [str(state), str(other)],
    }
    result = run(params, check_mode=False, now=NOW)
    assert result["changed"] is True
    assert result["files"] == {
        str(state): '{"current": null}\n' if exists else "",
        str(other): "",
    }


def test_acquire_returns_checksums_not_contents(lock_path: Path) -> None:
    env = lock_path.parent / "app.env"
    env.write_text("SECRET=s3cret\n")
    missing = lock_path.parent / "none.env"
    params = {
        "path": str(lock_path),
        "owner": "a@c",
        "run_id": "r",
        "checksum": [str(env), str(missing)],
    }
    result = run(params, check_mode=False, now=NOW)
    assert result["checksums"] == {
        str(env): hashlib.sha256(b"SECRET=s3cret\n").hexdigest(),
        str(missing): "",
    }
    assert "s3cret" not in json.dumps(result)


class Docker:
    """Answers the docker command lines it is given with canned output, and keeps them."""

    def __init__(self, rc: int = 0, out: str = "", err: str = "") -> None:
        self.answer = (rc, out, err)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        return self.answer


def test_acquire_lists_the_tags_of_the_app_image(lock_path: Path) -> None:
    docker = Docker(out="def\n<none>\nabc\n")
    params = {"path": str(lock_path), "owner": "a@c", "run_id": "r", "image_repository": "reg/app"}
    result = run(params, check_mode=False, runner=docker, now=NOW)
    assert result["image_tags"] == ["abc", "def"]
    assert docker.calls == [["docker", "image", "ls", "--format", "{{.Tag}}", "reg/app"]]


SLOT_FORMAT = (
    '{{index .Config.Labels "io.melk.slot"}} {{.State.Running}} {{.RestartCount}} '
    '{{index .Config.Labels "io.melk.sha"}} {{.NetworkSettings.IPAddress}}'
)


@pytest.mark.parametrize(
    ("rc", "err"),
    [(0, ""), (1, "Error: No such container: app-green\n")],
    ids=["both slots", "one slot empty"],
)
def test_acquire_reads_the_slots_in_the_same_task(lock_path: Path, rc: int, err: str) -> None:
    docker = Docker(rc=rc, out="blue true 0 abcdef0 172.17.0.3\n", err=err)
    params = {
        "path": str(lock_path),
        "owner": "a@c",
        "run_id": "r",
        "containers": ["app-blue", "app-green"],
    }
    result = run(params, check_mode=False, runner=docker, now=NOW)
    assert result["containers"] == "blue true 0 abcdef0 172.17.0.3\n"
    assert docker.calls == [
        [
            "docker",
            "inspect",
            "--type",
            "container",
            "--format",
            SLOT_FORMAT,
            "app-blue",
            "app-green",
        ]
    ]


SHA = "abcdef0"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("", ""),
        (f"blue true 0 {SHA} 172.17.0.3\n", f"blue true 0 {SHA} 172.17.0.3 200\n"),
        # stopped, or no address: not probed
        (f"green false 0 {SHA} \n", f"green false 0 {SHA}  -1\n"),
        (f"green true 0 {SHA} \n", f"green true 0 {SHA}  -1\n"),
        (f"green true 0 {SHA}\n", f"green true 0 {SHA}  -1\n"),
        (
            f"blue true 0 {SHA} 172.17.0.3\ngreen true 2 {SHA} 172.17.0.4\n",
            f"blue true 0 {SHA} 172.17.0.3 200\ngreen true 2 {SHA} 172.17.0.4 503\n",
        ),
        ("<no value>\n", ""),
    ],
)
def test_with_health_appends_one_probe_per_running_container(lines: str, expected: str) -> None:
    probed: list[str] = []

    def probe(address: str) -> int:
        probed.append(address)
        return {"172.17.0.3": 200, "172.17.0.4": 503}[address]

    assert with_health(lines, probe) == expected
    # only running containers with an address were probed, each once
    assert probed == [
        line.split(" ")[4] for line in expected.splitlines() if not line.endswith(" -1")
    ]


def test_acquire_probes_the_slots_with_probe_port(lock_path: Path) -> None:
    docker = Docker(out=f"blue true 0 {SHA} 172.17.0.3\ngreen false 0 {SHA} \n")
    params = {
        "path": str(lock_path),
        "owner": "a@c",
        "run_id": "r",
        "containers": ["app-blue", "app-green"],
        "probe_port": 8000,
        "probe_path": "/up",
    }
    result = run(params, check_mode=False, runner=docker, now=NOW, prober=lambda ip: 204)
    assert result["containers"] == f"blue true 0 {SHA} 172.17.0.3 204\ngreen false 0 {SHA}  -1\n"
    # without probe_port, the lines as docker gave them
    result = run({**params, "probe_port": None}, check_mode=False, runner=docker, now=NOW)
    assert result["containers"] == f"blue true 0 {SHA} 172.17.0.3\ngreen false 0 {SHA} \n"


def test_probe_url_is_the_containers_address_and_app_port() -> None:
    assert probe_url("172.17.0.3", 8000, "/health") == "http://172.17.0.3:8000/health"


def test_acquire_probes_a_real_listener(lock_path: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        docker = Docker(out=f"blue true 0 {SHA} 127.0.0.2\n")
        params = {
            "path": str(lock_path),
            "owner": "a@c",
            "run_id": "r",
            "containers": ["app-blue"],
            "probe_port": httpd.server_address[1],
        }
        result = run(params, check_mode=False, runner=docker, now=NOW)
        assert result["containers"] == f"blue true 0 {SHA} 127.0.0.2 200\n"
        result = run({**params, "probe_path": "/sick"}, check_mode=False, runner=docker, now=NOW)
        assert result["containers"] == f"blue true 0 {SHA} 127.0.0.2 503\n"
    finally:
        httpd.shutdown()
    # nothing listens any more: no answer
    result = run(params, check_mode=False, runner=docker, now=NOW)
    assert result["containers"] == f"blue true 0 {SHA} 127.0.0.2 -1\n"


def test_a_failed_slot_lookup_fails_with_dockers_reason(lock_path: Path) -> None:
    docker = Docker(rc=1, err="Cannot connect to the Docker daemon\n")
    params = {"path": str(lock_path), "owner": "a@c", "run_id": "r", "containers": ["app-blue"]}
    result = run(params, check_mode=False, runner=docker, now=NOW)
    assert result["failed"] is True
    assert "docker inspect app-blue: Cannot connect to the Docker daemon" in result["msg"]


def test_a_failed_image_lookup_fails_with_dockers_reason(lock_path: Path) -> None:
    docker = Docker(rc=1, err="Cannot connect to the Docker daemon\n")
    params = {"path": str(lock_path), "owner": "a@c", "run_id": "r", "image_repository": "reg/app"}
    result = run(params, check_mode=False, runner=docker, now=NOW)
    assert result["failed"] is True
    assert result["msg"] == (
        f"deploy lock {lock_path}: acquire failed: docker image ls reg/app: "
        "Cannot connect to the Docker daemon"
    )


@pytest.mark.docker
def test_image_tags_from_the_real_engine() -> None:
    def docker(argv: Sequence[str]) -> tuple[int, str, str]:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr

    assert "1" in deploy_lock.image_tags("melk-testbed/busybox", docker)
    assert deploy_lock.image_tags("melk-unit/never-built", docker) == []


def test_a_held_lock_looks_up_nothing(lock_path: Path) -> None:
    acquire(lock_path)

    def tags(argv: Sequence[str]) -> tuple[int, str, str]:
        raise AssertionError("looked up images without the lock")

    params = {
        "path": str(lock_path),
        "owner": "b@c",
        "run_id": "other",
        "image_repository": "reg/app",
        "checksum": ["/etc/hostname"],
    }
    result = run(params, check_mode=False, runner=tags, now=NOW)
    assert result["failed"] is True
    assert "image_tags" not in result
    assert "checksums" not in result


def test_a_held_lock_returns_no_content(lock_path: Path) -> None:
    acquire(lock_path)
    state = lock_path.parent / "releases.json"
    state.write_text("{}")
    params = {"path": str(lock_path), "owner": "b@c", "run_id": "other", "read": [str(state)]}
    result = run(params, check_mode=False, now=NOW)
    assert result["failed"] is True
    assert "files" not in result


def test_release_writes_the_record_then_removes_the_lock(lock_path: Path) -> None:
    acquire(lock_path)
    state = lock_path.parent / "releases.json"
    state.write_text("old")
    params = {"path": str(lock_path), "state": "release", "run_id": "run-a"}
    result = run({**params, "write": {str(state): '{"new": 1}\n'}}, check_mode=False)
    assert result["changed"] is True
    assert result["written"] == [str(state)]
    assert state.read_text() == '{"new": 1}\n'
    assert state.stat().st_mode & 0o777 == 0o644
    assert not lock_path.exists()
    assert [p.name for p in lock_path.parent.iterdir()] == ["releases.json"]


@pytest.mark.parametrize("holder", ["run-b", None])
def test_release_writes_nothing_without_the_lock(lock_path: Path, holder: str | None) -> None:
    if holder:
        acquire(lock_path, run_id=holder, owner="bob@ctl")
    state = lock_path.parent / "releases.json"
    state.write_text("theirs")
    params = {"path": str(lock_path), "state": "release", "run_id": "run-a"}
    result = run({**params, "write": {str(state): "ours"}}, check_mode=False)
    assert result["failed"] is True
    assert "was not written" in result["msg"]
    assert state.read_text() == "theirs"
    assert lock_path.exists() is bool(holder)


def test_release_in_check_mode_writes_nothing(lock_path: Path) -> None:
    acquire(lock_path)
    state = lock_path.parent / "releases.json"
    params = {"path": str(lock_path), "state": "release", "run_id": "run-a"}
    result = run({**params, "write": {str(state): "x"}}, check_mode=True)
    assert result["changed"] is True
    assert not state.exists()
    assert lock_path.exists()


def test_reacquire_by_same_run_is_unchanged(lock_path: Path) -> None:
    acquire(lock_path)
    before = lock_path.read_text()
    result = acquire(lock_path)
    assert result["changed"] is False
    assert "failed" not in result
    assert result["action"] == KEEP
    assert lock_path.read_text() == before


def test_release_by_another_run_leaves_the_file(lock_path: Path) -> None:
    acquire(lock_path)
    result = release(lock_path, run_id="run-b")
    assert result["changed"] is False
    assert "failed" not in result
    assert result["warnings"] and "alice@ctl" in result["warnings"][0]
    assert lock_path.exists()


def test_release_by_owner_removes_and_absent_is_ok(lock_path: Path) -> None:
    acquire(lock_path)
    result = release(lock_path)
    assert result["changed"] is True
    assert result["lock"]["run_id"] == "run-a"
    assert not lock_path.exists()
    again = release(lock_path)
    assert again["changed"] is False
    assert "failed" not in again


def test_break_removes_and_reports_holder(lock_path: Path) -> None:
    acquire(lock_path)
    result = break_lock(lock_path)
    assert result["changed"] is True
    assert result["broken"]["owner"] == "alice@ctl"
    assert not lock_path.exists()
    again = break_lock(lock_path)
    assert again["changed"] is False
    assert again["broken"] is None
    assert acquire(lock_path, run_id="run-b")["changed"] is True


def acquire_breaking(path: Path, run_id: str = "run-b", check: bool = False) -> dict[str, Any]:
    params = {"path": str(path), "owner": "bob@ctl", "run_id": run_id, "break_first": True}
    return run(params, check_mode=check, now=NOW)


def test_break_first_breaks_another_runs_lock_then_takes_it(lock_path: Path) -> None:
    acquire(lock_path)
    held = on_disk(lock_path)
    result = acquire_breaking(lock_path)
    assert (result["changed"], result["action"], result["broken"]) == (True, "create", held)
    assert result["lock"]["run_id"] == "run-b"
    assert on_disk(lock_path)["owner"] == "bob@ctl"


def test_break_first_without_a_lock_takes_it_and_broke_nothing(lock_path: Path) -> None:
    result = acquire_breaking(lock_path)
    assert (result["changed"], result["broken"]) == (True, None)
    assert on_disk(lock_path)["run_id"] == "run-b"


def test_break_first_in_check_mode_leaves_the_lock_as_it_was(lock_path: Path) -> None:
    # as a break then a take, each in check mode: nothing is removed, so the take
    # finds the lock held
    acquire(lock_path)
    before = lock_path.read_text()
    result = acquire_breaking(lock_path, check=True)
    assert result["failed"] is True and result["action"] == "held"
    assert lock_path.read_text() == before


def test_check_mode_changes_nothing(lock_path: Path) -> None:
    result = acquire(lock_path, check=True)
    assert result["changed"] is True
    assert not lock_path.exists()

    acquire(lock_path)
    before = lock_path.read_text()
    assert release(lock_path, check=True)["changed"] is True
    assert break_lock(lock_path, check=True)["changed"] is True
    held = acquire(lock_path, run_id="run-b", check=True)
    assert held["failed"] is True
    assert lock_path.read_text() == before


@pytest.mark.parametrize("content", ["", "{not json", "[]"])
def test_corrupt_lock(lock_path: Path, content: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(melk_lock, "EMPTY_READ_DELAY", 0.0)
    lock_path.write_text(content)
    result = acquire(lock_path)
    assert result["failed"] is True
    assert "corrupt" in result["msg"]
    assert "deploy_lock_break" in result["msg"]
    released = release(lock_path)
    assert released["changed"] is False
    assert lock_path.exists()
    broken = break_lock(lock_path)
    assert broken["changed"] is True
    assert "unreadable" in broken["broken"]
    assert not lock_path.exists()


def test_missing_directory_and_params(tmp_path: Path) -> None:
    result = acquire(tmp_path / "missing" / "deploy.lock")
    assert result["failed"] is True
    assert "does not exist" in result["msg"]
    assert "provision.yml" in result["msg"]
    bad = run({"path": str(tmp_path / "l"), "state": "acquire", "run_id": "r"}, check_mode=False)
    assert bad["failed"] is True
    assert "owner" in bad["msg"]


def test_held_message_age_from_since(lock_path: Path) -> None:
    acquire(lock_path)
    later = NOW + timedelta(hours=2, minutes=5)
    result = run(
        {"path": str(lock_path), "state": "acquire", "owner": "bob@ctl", "run_id": "run-b"},
        check_mode=False,
        now=later,
    )
    assert "since 2026-11-27T04:00:00Z (2h 5m ago)" in result["msg"]


# --------------------------------------------------------------------------- the lock's races


def test_create_lock_refuses_an_existing_file(lock_path: Path) -> None:
    assert melk_lock.create_lock(str(lock_path), HOLDER) is True
    other = {**HOLDER, "run_id": "run-b", "owner": "bob@ctl"}
    assert melk_lock.create_lock(str(lock_path), other) is False
    assert json.loads(lock_path.read_text()) == HOLDER


def test_of_two_runs_that_both_saw_no_lock_only_one_wins(lock_path: Path) -> None:
    """Both runs look before either creates: the second create fails, and its second look
    finds the winner's lock, so it fails naming the winner."""
    record_a = lock_record("alice@ctl", "run-a", "deploy", NOW, "app1")
    record_b = lock_record("bob@ctl", "run-b", "deploy", NOW, "app1")
    looks: list[str] = []

    def read_b(path: str) -> melk_lock.Found:
        looks.append(path)
        if len(looks) == 1:  # run b looks, sees nothing; run a creates before b does
            assert melk_lock.take(path, record_a, False)[0] == CREATE
            return melk_lock.Found(None, None)
        return melk_lock.read_lock(path)

    action, lock, _reason = melk_lock.take(str(lock_path), record_b, False, read=read_b)
    assert (action, lock) == (HELD, record_a)
    assert len(looks) == 2
    assert json.loads(lock_path.read_text()) == record_a


def test_racing_acquires_in_threads_have_one_winner(lock_path: Path) -> None:
    barrier = threading.Barrier(8)
    results: dict[str, dict[str, Any]] = {}

    def contend(run_id: str) -> None:
        barrier.wait()
        results[run_id] = acquire(lock_path, run_id=run_id, owner=f"{run_id}@ctl")

    threads = [threading.Thread(target=contend, args=(f"run-{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [run_id for run_id, result in results.items() if not result.get("failed")]
    assert len(winners) == 1
    assert json.loads(lock_path.read_text())["run_id"] == winners[0]
    for run_id, result in results.items():
        if run_id != winners[0]:
            assert result["action"] == HELD
            assert f"run {winners[0]}" in result["msg"]


def test_a_lock_that_keeps_changing_hands_gives_up_after_three_looks(lock_path: Path) -> None:
    looks: list[str] = []
    creates: list[str] = []

    def read(path: str) -> melk_lock.Found:
        looks.append(path)
        return melk_lock.Found(None, None)  # gone again each time we look

    def create(path: str, record: Any) -> bool:
        creates.append(path)
        return False  # and back each time we create

    record = lock_record("bob@ctl", "run-b", "deploy", NOW, "app1")
    taken = melk_lock.take(str(lock_path), record, False, read=read, create=create)
    assert taken == (HELD, None, None)
    assert len(looks) == len(creates) == melk_lock.CREATE_ATTEMPTS == 3


def test_an_unreadable_lock_is_corrupt(lock_path: Path) -> None:
    lock_path.mkdir()  # reading it fails with an OSError
    result = acquire(lock_path)
    assert result["failed"] is True
    assert result["action"] == CORRUPT
    assert "cannot read it: [Errno 21] Is a directory" in result["msg"]


def test_a_lock_read_empty_is_read_again_until_its_creator_wrote_it(lock_path: Path) -> None:
    """The other run has created the file but not yet written its JSON."""
    lock_path.write_text("")
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:  # the creator writes while we wait
            lock_path.write_text(json.dumps(HOLDER))

    assert melk_lock.read_lock(str(lock_path), sleep=sleep) == (HOLDER, None)
    assert slept == [melk_lock.EMPTY_READ_DELAY] * 2


def test_a_lock_that_stays_empty_is_corrupt_after_the_retries(lock_path: Path) -> None:
    lock_path.write_text("")
    slept: list[float] = []
    assert melk_lock.read_lock(str(lock_path), sleep=slept.append) == (None, "the file is empty")
    assert len(slept) == melk_lock.EMPTY_READ_RETRIES


# --------------------------------------------------------------------------- the record


def test_the_record_replaces_releases_json_at_once(lock_path: Path) -> None:
    """A reader of the old releases.json, or a crash during the write, sees the whole old
    file: the new one is a new file renamed over it, not the old one rewritten."""
    acquire(lock_path)
    state = lock_path.parent / "releases.json"
    state.write_text('{"old": true}\n')
    with state.open() as reader:
        result = run(
            {"path": str(lock_path), "state": "release", "run_id": "run-a",
             "write": {str(state): '{"new": true}\n'}},
            check_mode=False,
        )  # fmt: skip
        assert reader.read() == '{"old": true}\n'
    assert result["written"] == [str(state)]
    assert state.read_text() == '{"new": true}\n'


def test_a_record_that_cannot_be_written_leaves_the_old_one_and_the_lock(
    lock_path: Path,
) -> None:
    acquire(lock_path)
    state = lock_path.parent / "releases.json"
    state.write_text('{"old": true}\n')
    params = {"path": str(lock_path), "state": "release", "run_id": "run-a"}
    with pytest.raises(UnicodeEncodeError):  # fails half-way through the text
        run({**params, "write": {str(state): '{"new": "\udcff"}'}}, check_mode=False)
    assert state.read_text() == '{"old": true}\n'
    assert lock_path.exists()
    assert sorted(p.name for p in lock_path.parent.iterdir()) == ["deploy.lock", "releases.json"]


# --------------------------------------------------------------------------- main()


def test_main_acquires_reads_and_releases(lock_path: Path) -> None:
    state = lock_path.parent / "releases.json"
    state.write_text("{}")
    args = {"path": str(lock_path), "owner": "a@c", "run_id": "r", "read": [str(state)]}
    taken = run_module(deploy_lock.main, args)
    assert (taken["rc"], taken["changed"], taken["action"]) == (0, True, CREATE)
    assert taken["files"] == {str(state): "{}"}
    held = run_module(deploy_lock.main, {**args, "run_id": "other"})
    assert held["rc"] == 1
    assert held["failed"] is True
    assert "is held by a@c" in held["msg"]
    released = run_module(
        deploy_lock.main,
        {"path": str(lock_path), "state": "release", "run_id": "r", "write": {str(state): "new"}},
    )
    assert (released["rc"], released["action"], released["written"]) == (0, REMOVE, [str(state)])
    assert state.read_text() == "new"
    assert not lock_path.exists()


def test_main_warns_when_the_lock_is_another_runs(lock_path: Path) -> None:
    acquire(lock_path)
    result = run_module(
        deploy_lock.main, {"path": str(lock_path), "state": "release", "run_id": "b"}
    )
    assert result["rc"] == 0
    assert result["action"] == FOREIGN
    assert result["warnings"] == [
        f"deploy lock {lock_path} is held by alice@ctl (run run-a), not by this run; left in place"
    ]


def test_main_requires_owner_and_run_id_to_acquire(lock_path: Path) -> None:
    result = run_module(deploy_lock.main, {"path": str(lock_path)})
    assert result["rc"] == 1
    assert "owner" in result["msg"] and "run_id" in result["msg"]
    assert not lock_path.exists()


# --------------------------------------------------------------------------- exact results

HINT = "If that run is dead, break the lock with: -e deploy_lock_break=true"


def on_disk(path: Path) -> dict[str, Any]:
    lock: dict[str, Any] = json.loads(path.read_text())
    return lock


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3599, "59m 59s"), (3600, "1h 0m"), (86399, "23h 59m"), (86400, "1d 0h")],
)
def test_age_text_boundaries(seconds: float, text: str) -> None:
    assert age_text(seconds) == text


def test_an_empty_field_of_the_holder_shows_as_a_question_mark() -> None:
    holder = {**HOLDER, "owner": "", "purpose": None}
    assert format_held_message("/l", holder, NOW).startswith(
        "deploy lock /l is held by ? (?, run run-a) since"
    )


def test_params_error_lists_the_states() -> None:
    assert params_error({"path": "/l", "state": "steal"}) == (
        "state must be one of acquire, release, break, got 'steal'"
    )


def test_image_repository_needs_a_runner() -> None:
    with pytest.raises(ValueError) as raised:
        deploy_lock.read_state({"image_repository": "reg/app"}, None)
    assert str(raised.value) == "image_repository given without a way to look it up"


def test_acquire_result(lock_path: Path) -> None:
    result = acquire(lock_path)
    assert result == {
        "changed": True,
        "action": CREATE,
        "lock": on_disk(lock_path),
        "msg": f"acquired deploy lock {lock_path}",
    }


@pytest.mark.parametrize(
    ("given", "purpose"), [("rollback", "rollback"), (None, "deploy"), ("", "deploy")]
)
def test_the_lock_names_its_purpose(lock_path: Path, given: str | None, purpose: str) -> None:
    params = {"path": str(lock_path), "owner": "a@c", "run_id": "r", "purpose": given}
    assert run(params, check_mode=False, now=NOW)["lock"]["purpose"] == purpose
    assert on_disk(lock_path)["purpose"] == purpose


def test_acquire_again_result(lock_path: Path) -> None:
    acquire(lock_path)
    assert acquire(lock_path) == {
        "changed": False,
        "action": KEEP,
        "lock": on_disk(lock_path),
        "msg": f"deploy lock {lock_path} is already held by this run",
    }


def test_acquire_of_a_held_lock_result(lock_path: Path) -> None:
    acquire(lock_path)
    assert acquire(lock_path, run_id="run-b", owner="bob@ctl") == {
        "failed": True,
        "changed": False,
        "action": HELD,
        "lock": on_disk(lock_path),
        "msg": (
            f"deploy lock {lock_path} is held by alice@ctl (deploy, run run-a) since "
            "2026-11-27T04:00:00Z (0s ago). Another deploy or rollback is running on this "
            f"host. {HINT}"
        ),
    }


def test_acquire_of_a_lock_that_keeps_changing_hands_result(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def take(path: str, record: Any, check_mode: bool) -> Any:
        return melk_lock.take(
            path,
            record,
            check_mode,
            read=lambda _path: melk_lock.Found(None, None),
            create=lambda _path, _record: False,
        )

    monkeypatch.setattr(deploy_lock, "take", take)
    assert acquire(lock_path) == {
        "failed": True,
        "changed": False,
        "action": HELD,
        "msg": f"deploy lock {lock_path} keeps changing hands; try again. {HINT}",
    }


def test_acquire_of_a_corrupt_lock_result(lock_path: Path) -> None:
    lock_path.write_text("[]")
    assert acquire(lock_path) == {
        "failed": True,
        "changed": False,
        "action": CORRUPT,
        "msg": (
            f"deploy lock {lock_path} exists but is unreadable or corrupt (not a JSON object), "
            "so its holder is unknown. Another deploy or rollback may be running on this host. "
            f"{HINT}"
        ),
    }


def test_release_result(lock_path: Path) -> None:
    acquire(lock_path)
    lock = on_disk(lock_path)
    state = lock_path.parent / "releases.json"
    params = {"path": str(lock_path), "state": "release", "run_id": "run-a"}
    assert run({**params, "write": {str(state): "{}"}}, check_mode=False) == {
        "changed": True,
        "action": REMOVE,
        "lock": lock,
        "written": [str(state)],
        "msg": f"released deploy lock {lock_path}",
    }


def test_release_of_no_lock_result(lock_path: Path) -> None:
    assert release(lock_path) == {
        "changed": False,
        "action": ABSENT,
        "msg": f"deploy lock {lock_path} is not held",
    }


def test_release_of_another_runs_lock_result(lock_path: Path) -> None:
    acquire(lock_path, run_id="run-b", owner="bob@ctl")
    assert release(lock_path) == {
        "changed": False,
        "action": FOREIGN,
        "lock": on_disk(lock_path),
        "msg": f"deploy lock {lock_path} left in place: it is not held by this run",
        "warnings": [
            f"deploy lock {lock_path} is held by bob@ctl (run run-b), not by this run; "
            "left in place"
        ],
    }


def test_release_of_a_corrupt_lock_leaves_it_with_a_warning(lock_path: Path) -> None:
    lock_path.write_text("[]")
    assert release(lock_path) == {
        "changed": False,
        "action": FOREIGN,
        "lock": None,
        "msg": f"deploy lock {lock_path} left in place: it is not held by this run",
        "warnings": [
            f"deploy lock {lock_path} is unreadable (not a JSON object); left in place. {HINT}"
        ],
    }
    assert lock_path.read_text() == "[]"


def test_release_with_a_record_but_without_the_lock_result(lock_path: Path) -> None:
    acquire(lock_path, run_id="run-b", owner="bob@ctl")
    first, second = (str(lock_path.parent / name) for name in ("a.json", "b.json"))
    params = {"path": str(lock_path), "state": "release", "run_id": "run-a"}
    assert run({**params, "write": {second: "2", first: "1"}}, check_mode=False) == {
        "failed": True,
        "changed": False,
        "action": FOREIGN,
        "lock": on_disk(lock_path),
        "written": [],
        "msg": (
            f"deploy lock {lock_path} is no longer held by this run (it was broken), so "
            f"{first}, {second} was not written: this run's record is lost. "
            "Check what serves with playbooks/status.yml."
        ),
    }


def test_break_result(lock_path: Path) -> None:
    acquire(lock_path)
    lock = on_disk(lock_path)
    assert break_lock(lock_path) == {
        "changed": True,
        "action": REMOVE,
        "broken": lock,
        "msg": f"broke deploy lock {lock_path}",
    }
    assert break_lock(lock_path) == {
        "changed": False,
        "action": ABSENT,
        "broken": None,
        "msg": f"deploy lock {lock_path} is not held",
    }


def test_break_in_check_mode_of_no_lock_changes_nothing(lock_path: Path) -> None:
    assert break_lock(lock_path, check=True) == {
        "changed": False,
        "action": ABSENT,
        "broken": None,
        "msg": f"deploy lock {lock_path} is not held",
    }
    assert not lock_path.exists()


def test_break_of_a_corrupt_lock_says_why_it_was_unreadable(lock_path: Path) -> None:
    lock_path.write_text("[]")
    assert break_lock(lock_path)["broken"] == {"unreadable": "not a JSON object"}
    assert not lock_path.exists()


def test_run_refuses_bad_params_without_a_change(lock_path: Path) -> None:
    assert run({"path": str(lock_path), "state": "release"}, check_mode=False) == {
        "failed": True,
        "changed": False,
        "msg": "state=release requires run_id",
    }


def test_run_refuses_a_lock_in_a_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "deploy.lock"
    assert acquire(path) == {
        "failed": True,
        "changed": False,
        "msg": (
            f"directory {path.parent} of deploy lock {path} does not exist: "
            "provision the host first (playbooks/provision.yml)"
        ),
    }


def test_a_failed_image_lookup_is_a_failure_without_a_change(lock_path: Path) -> None:
    docker = Docker(rc=1, err="boom\n")
    params = {"path": str(lock_path), "owner": "a@c", "run_id": "r", "image_repository": "reg/app"}
    assert run(params, check_mode=False, runner=docker, now=NOW) == {
        "failed": True,
        "changed": False,
        "msg": f"deploy lock {lock_path}: acquire failed: docker image ls reg/app: boom",
    }


# --------------------------------------------------------------------------- main() options


def test_main_in_check_mode_changes_nothing(lock_path: Path) -> None:
    args = {"path": str(lock_path), "owner": "a@c", "run_id": "r", "_ansible_check_mode": True}
    taken = run_module(deploy_lock.main, args)
    assert (taken["rc"], taken["changed"], taken["action"]) == (0, True, CREATE)
    assert not lock_path.exists()
    acquire(lock_path, run_id="r")
    released = run_module(deploy_lock.main, {**args, "state": "release"})
    assert (released["rc"], released["changed"], released["action"]) == (0, True, REMOVE)
    assert on_disk(lock_path)["run_id"] == "r"


def test_main_looks_up_image_tags_with_the_modules_command_runner(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    def run_command(self: Any, argv: list[str], **kwargs: Any) -> tuple[int, str, str]:
        calls.append(argv)
        return 0, "b\na\n", ""

    monkeypatch.setattr(deploy_lock.AnsibleModule, "run_command", run_command)
    args = {"path": str(lock_path), "owner": "a@c", "run_id": "r", "image_repository": "reg/app"}
    result = run_module(deploy_lock.main, args)
    assert (result["rc"], result["image_tags"]) == (0, ["a", "b"])
    assert calls == [["docker", "image", "ls", "--format", "{{.Tag}}", "reg/app"]]


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        ({}, "state is acquire but all of the following are missing: owner, run_id"),
        ({"state": "release"}, "state is release but all of the following are missing: run_id"),
    ],
)
def test_main_names_the_missing_parameters(lock_path: Path, args: dict[str, Any], msg: str) -> None:
    result = run_module(deploy_lock.main, {"path": str(lock_path), **args})
    assert (result["rc"], result["msg"]) == (1, msg)


def both_lookups(lock_path: Path) -> dict[str, object]:
    """Acquire parameters that look up the images and a slot container."""
    return {
        "path": str(lock_path),
        "owner": "a@c",
        "run_id": "r",
        "image_repository": "reg/app",
        "containers": ["app-blue"],
    }


def test_the_image_lookup_runs_beside_the_containers_lookup(lock_path: Path) -> None:
    """Both docker commands are under way at once: each waits until the other started."""
    started = {"image": threading.Event(), "inspect": threading.Event()}

    def docker(argv: Sequence[str]) -> tuple[int, str, str]:
        mine, other = ("image", "inspect") if argv[1] == "image" else ("inspect", "image")
        started[mine].set()
        assert started[other].wait(5), f"docker {other} never started beside docker {mine}"
        return (0, "v1\n", "") if mine == "image" else (0, "blue true 0 abcdef0 1.2.3.4\n", "")

    params = both_lookups(lock_path)
    result = run(params, check_mode=False, runner=docker, now=NOW)
    assert result["image_tags"] == ["v1"]
    assert result["containers"] == "blue true 0 abcdef0 1.2.3.4\n"


def test_a_failed_image_lookup_still_fails_the_task_beside_the_containers(
    lock_path: Path,
) -> None:
    def docker(argv: Sequence[str]) -> tuple[int, str, str]:
        if argv[1] == "image":
            return 1, "", "Cannot connect to the Docker daemon"
        return 0, "", ""

    params = both_lookups(lock_path)
    with pytest.raises(OSError, match="docker image ls reg/app: Cannot connect"):
        deploy_lock.read_state(params, docker)
