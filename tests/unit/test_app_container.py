"""Unit tests for roles/app_deploy/library/app_container.py: the command line it builds,
and the module's logic against this machine's real Docker engine (make testbed starts it)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml
from app_container import missing, run, run_argv
from hypothesis import given
from hypothesis import strategies as st

BUSYBOX = "melk-testbed/busybox:1"


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def runner(argv: Sequence[str]) -> tuple[int, str, str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


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


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        ("Error: No such container: melk-ai-blue", True),
        ("Error response from daemon: No such image: x:y", True),
        ("Error response from daemon: driver failed programming external connectivity", False),
    ],
)
def test_missing(stderr: str, expected: bool) -> None:
    assert missing(stderr) is expected


def test_documentation_is_yaml_and_matches_the_module() -> None:
    import app_container

    doc = yaml.safe_load(app_container.DOCUMENTATION)
    yaml.safe_load(app_container.EXAMPLES)
    yaml.safe_load(app_container.RETURN)
    assert doc["module"] == "app_container"
    assert doc["options"]["state"]["choices"] == list(app_container.STATES)


# --- against the real engine ---------------------------------------------------------


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """A busybox image that keeps running (its default command exits at once)."""
    if docker("version").returncode != 0:
        pytest.fail("no Docker engine answers: run `make testbed` first")
    ref = f"melk-unit/app-container:{uuid.uuid4().hex[:8]}"
    built = subprocess.run(
        ["docker", "build", "--quiet", "--tag", ref, "-"],
        input=f'FROM {BUSYBOX}\nCMD ["sleep", "300"]\n',
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    yield ref
    docker("image", "rm", "--force", ref)


@pytest.fixture
def name() -> Iterator[str]:
    container = f"melk-unit-{uuid.uuid4().hex[:8]}"
    yield container
    docker("rm", "--force", container)


def inspect(container: str) -> dict[str, object]:
    done = docker("inspect", container)
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)[0]
    return data


def test_started_runs_a_container_with_its_labels_and_env_file(
    image: str, name: str, tmp_path: Path
) -> None:
    env = tmp_path / "app.env"
    env.write_text("APP_SECRET_TOKEN=unit-sentinel-42\n")
    labels = {"io.melk.sha": "abc", "note": "a b; $(touch /tmp/x)"}
    params = {"name": name, "image": image, "env_file": str(env), "labels": labels}
    result = run({**params, "restart_policy": "unless-stopped", "stop_timeout": 3}, False, runner)
    assert result["changed"] is True, result
    assert "unit-sentinel-42" not in json.dumps(result)
    data = inspect(name)
    assert data["Id"] == result["container_id"]
    assert data["State"]["Running"] is True  # type: ignore[index]
    assert data["Config"]["Labels"] == labels  # type: ignore[index]
    assert "APP_SECRET_TOKEN=unit-sentinel-42" in data["Config"]["Env"]  # type: ignore[index]
    assert data["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"  # type: ignore[index]
    assert data["Config"]["StopTimeout"] == 3  # type: ignore[index]


def test_started_again_replaces_the_container(image: str, name: str) -> None:
    first = run({"name": name, "image": image}, False, runner)
    second = run({"name": name, "image": image}, False, runner)
    assert first["container_id"] != second["container_id"]
    assert inspect(name)["Id"] == second["container_id"]
    assert docker("inspect", first["container_id"]).returncode != 0


def test_started_from_an_image_not_on_the_host_fails_without_a_pull(name: str) -> None:
    result = run({"name": name, "image": "melk-unit/not-here:never"}, False, runner)
    assert result["failed"] is True
    assert "melk-unit/not-here:never" in result["msg"]
    assert docker("image", "inspect", "melk-unit/not-here:never").returncode != 0


def test_stopped_keeps_the_container_and_absent_removes_it(image: str, name: str) -> None:
    run({"name": name, "image": image}, False, runner)
    stopped = run({"name": name, "state": "stopped", "stop_timeout": 1}, False, runner)
    assert stopped == {"changed": True}
    assert inspect(name)["State"]["Running"] is False  # type: ignore[index]
    again = run({"name": name, "state": "stopped"}, False, runner)
    assert again == {"changed": False}
    absent = run({"name": name, "state": "absent"}, False, runner)
    assert absent["changed"] is True
    assert docker("inspect", name).returncode != 0
    assert run({"name": name, "state": "absent"}, False, runner)["changed"] is False


def test_check_mode_changes_nothing(image: str, name: str) -> None:
    assert run({"name": name, "image": image}, True, runner) == {"changed": True}
    assert docker("inspect", name).returncode != 0
    run({"name": name, "image": image}, False, runner)
    assert run({"name": name, "state": "absent"}, True, runner)["changed"] is True
    assert inspect(name)["State"]["Running"] is True  # type: ignore[index]


def test_absent_removes_the_images_no_longer_retained(image: str, name: str) -> None:
    old = f"{image}-old"
    assert docker("tag", image, old).returncode == 0
    run({"name": name, "image": image}, False, runner)
    result = run(
        {
            "name": name,
            "state": "absent",
            "stop_timeout": 1,
            "remove_images": [old, f"{image}-never"],
        },
        False,
        runner,
    )
    assert result["removed_images"] == [old]
    assert result["warnings"] == []
    assert docker("image", "inspect", old).returncode != 0
    assert docker("image", "inspect", image).returncode == 0
