"""Unit tests for roles/app_deploy/library/app_container.py: the command lines it runs, in
order (no engine needed), and the module against this machine's real Docker engine
(marked docker; make testbed starts it)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import app_container
import pytest
from ansible.module_utils.melk_docker import STATE_FORMAT
from app_container import decide_stop, run
from module_harness import Docker, run_module

BUSYBOX = "melk-testbed/busybox:1"


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def runner(argv: Sequence[str]) -> tuple[int, str, str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


NAME = "melk-ai-blue"
IMAGE = "reg.example/melk-ai:abc"
RUN = [
    "docker", "run", "--detach", "--pull", "never", "--name", NAME,
    "--restart", "unless-stopped", "--stop-timeout", "7",
    "--publish", "127.0.0.1:18001:8000",
    "--label", "io.melk.sha=abc",
    IMAGE,
]  # fmt: skip
STATE = ["docker", "inspect", "--type", "container", "--format", STATE_FORMAT, NAME]
GONE = (1, "", "Error response from daemon: No such container: melk-ai-blue\n")
IN_USE = (
    1,
    "",
    'Error response from daemon: conflict: unable to remove repository reference "old:1" '
    "(must force) - container 0123abcd is using its referenced image 4567ef01\n",
)
STARTED = {
    "name": NAME,
    "image": IMAGE,
    "published_ports": ["127.0.0.1:18001:8000"],
    "labels": {"io.melk.sha": "abc"},
    "restart_policy": "unless-stopped",
    "stop_timeout": 7,
}


ADDRESS = [
    "docker", "inspect", "--type", "container", "--format", "{{.NetworkSettings.IPAddress}}", NAME,
]  # fmt: skip


def test_started_removes_the_slots_old_container_then_runs_the_new_one() -> None:
    docker = Docker(
        (["docker", "run"], (0, "f00d\n", "")), (["docker", "inspect"], (0, "172.17.0.5\n", ""))
    )
    assert run(STARTED, False, docker) == {
        "changed": True,
        "container_id": "f00d",
        "ip": "172.17.0.5",
    }
    assert docker.calls == [["docker", "rm", "--force", NAME], RUN, ADDRESS]


def test_started_in_an_empty_slot_runs_the_new_one() -> None:
    docker = Docker((["docker", "rm"], GONE), (["docker", "run"], (0, "f00d\n", "")))
    assert run(STARTED, False, docker)["container_id"] == "f00d"
    assert docker.calls == [["docker", "rm", "--force", NAME], RUN, ADDRESS]


def test_started_removes_the_images_it_is_given_once_the_new_one_runs() -> None:
    docker = Docker(
        (["docker", "run"], (0, "f00d\n", "")), (["docker", "image", "rm", "old:1"], IN_USE)
    )
    result = run({**STARTED, "remove_images": ["old:1", "older:1"]}, False, docker)
    assert result["removed_images"] == ["older:1"]
    assert result["warnings"] == [f"image old:1 was kept: {IN_USE[2].strip()}"]
    assert docker.calls == [
        ["docker", "rm", "--force", NAME],
        RUN,
        ADDRESS,
        ["docker", "image", "rm", "old:1"],
        ["docker", "image", "rm", "older:1"],
    ]


def test_a_started_container_without_an_address_reports_none() -> None:
    docker = Docker((["docker", "inspect"], (1, "", "Error: No such container\n")))
    assert run(STARTED, False, docker)["ip"] == ""


def test_started_stops_when_the_old_container_cannot_be_removed() -> None:
    docker = Docker((["docker", "rm"], (1, "", "Error: device or resource busy\n")))
    result = run(STARTED, False, docker)
    assert result == {
        "failed": True,
        "changed": False,
        "msg": f"removing container {NAME} failed (exit 1): Error: device or resource busy",
    }
    assert docker.calls == [["docker", "rm", "--force", NAME]]


def test_stopped_stops_a_running_container_and_keeps_it() -> None:
    docker = Docker((STATE, (0, "true 0 running 0\n", "")))
    assert run({"name": NAME, "state": "stopped", "stop_timeout": 5}, False, docker) == {
        "changed": True
    }
    assert docker.calls == [STATE, ["docker", "stop", "--time", "5", NAME]]


def test_absent_keeps_an_image_in_use_with_a_warning() -> None:
    docker = Docker(
        (STATE, (0, "false 0 exited 0\n", "")),
        (["docker", "image", "rm", "old:1"], IN_USE),
        (["docker", "image", "rm", "gone:1"], (1, "", "Error: No such image: gone:1\n")),
    )
    params = {"name": NAME, "state": "absent", "remove_images": ["old:1", "gone:1", "new:1"]}
    result = run(params, False, docker)
    assert result == {
        "changed": True,
        "removed_images": ["new:1"],
        "warnings": [f"image old:1 was kept: {IN_USE[2].strip()}"],
    }
    assert docker.calls == [
        STATE,
        ["docker", "rm", "--force", NAME],
        ["docker", "image", "rm", "old:1"],
        ["docker", "image", "rm", "gone:1"],
        ["docker", "image", "rm", "new:1"],
    ]


@pytest.mark.parametrize(
    ("state", "exists", "running", "images", "stop", "remove", "prune", "changed"),
    [
        ("stopped", False, False, ["i"], False, False, [], False),
        ("stopped", True, True, [], True, False, [], True),
        ("stopped", True, False, [], False, False, [], False),
        ("absent", True, False, [], False, True, [], True),
        ("absent", True, True, ["i"], True, True, ["i"], True),
        ("absent", False, False, ["i"], False, False, ["i"], True),
        ("absent", False, False, [], False, False, [], False),
    ],
)
def test_decide_stop(
    state: str,
    exists: bool,
    running: bool,
    images: list[str],
    stop: bool,
    remove: bool,
    prune: list[str],
    changed: bool,
) -> None:
    plan = {"stop": stop, "remove": remove, "images": prune, "changed": changed}
    assert decide_stop(state, exists, running, images) == plan


def test_main_in_check_mode_reports_and_runs_nothing() -> None:
    result = run_module(
        app_container.main,
        {"name": "h1-never-started", "image": "x:1", "_ansible_check_mode": True},
    )
    assert (result["rc"], result["changed"]) == (0, True)
    assert "container_id" not in result


def test_absent_without_a_name_removes_only_the_images() -> None:
    """After a deploy that keeps the standby: prune, and touch no container."""
    docker = Docker(
        (["docker", "image", "rm", "old:1"], IN_USE),
        (["docker", "image", "rm", "gone:1"], (1, "", "Error: No such image: gone:1\n")),
    )
    result = run({"state": "absent", "remove_images": ["old:1", "gone:1", "new:1"]}, False, docker)
    assert result == {
        "changed": True,
        "removed_images": ["new:1"],
        "warnings": [f"image old:1 was kept: {IN_USE[2].strip()}"],
    }
    assert docker.calls == [["docker", "image", "rm", x] for x in ("old:1", "gone:1", "new:1")]


def history(current: str, *entries: str) -> str:
    return json.dumps(
        {"current": {"sha": "a" * 40, "image": current}, "history": [{"image": e} for e in entries]}
    )


def test_images_another_apps_history_names_are_never_removed(tmp_path: Path) -> None:
    """Two apps on one host from one image repository (a staging copy): one's deploy
    must not remove the other's retained releases."""
    for app, text in {
        "melk-ai": history("repo:a5", "repo:a5", "repo:a4", "repo:b1"),  # this app, on disk
        "staging": history("repo:s2", "repo:s2", "repo:a1"),
        "broken": "{not json",
    }.items():
        (tmp_path / app).mkdir()
        (tmp_path / app / "releases.json").write_text(text)
    docker = Docker()
    result = run(
        {
            "state": "absent",
            "remove_images": ["repo:a1", "repo:b1", "repo:s2", "repo:a0"],
            "keep_images_of": [str(tmp_path / "*" / "releases.json")],
            "own_history": str(tmp_path / "melk-ai" / "releases.json"),
        },
        False,
        docker,
    )
    assert result["removed_images"] == ["repo:b1", "repo:a0"]
    assert docker.calls == [["docker", "image", "rm", x] for x in ("repo:b1", "repo:a0")]


def test_absent_without_a_name_in_check_mode_runs_nothing() -> None:
    docker = Docker()
    result = run({"state": "absent", "remove_images": ["old:1"]}, True, docker)
    assert result == {"changed": True, "removed_images": ["old:1"]}
    assert docker.calls == []
    assert run({"state": "absent", "remove_images": []}, True, docker)["changed"] is False


@pytest.mark.parametrize("state", ["started", "stopped"])
def test_main_requires_a_name_to_start_or_stop(state: str) -> None:
    result = run_module(app_container.main, {"state": state, "image": "x:1"})
    assert result["rc"] == 1
    assert "name" in result["msg"]


def test_main_requires_an_image_to_start() -> None:
    result = run_module(app_container.main, {"name": "h1-never-started"})
    assert result["rc"] == 1
    assert "image" in result["msg"]


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


@pytest.mark.docker
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


@pytest.mark.docker
def test_started_again_replaces_the_container(image: str, name: str) -> None:
    first = run({"name": name, "image": image}, False, runner)
    second = run({"name": name, "image": image}, False, runner)
    assert first["container_id"] != second["container_id"]
    assert inspect(name)["Id"] == second["container_id"]
    assert docker("inspect", first["container_id"]).returncode != 0


@pytest.mark.docker
def test_started_from_an_image_not_on_the_host_fails_without_a_pull(name: str) -> None:
    result = run({"name": name, "image": "melk-unit/not-here:never"}, False, runner)
    assert result["failed"] is True
    assert "melk-unit/not-here:never" in result["msg"]
    assert docker("image", "inspect", "melk-unit/not-here:never").returncode != 0


@pytest.mark.docker
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


@pytest.mark.docker
def test_check_mode_changes_nothing(image: str, name: str) -> None:
    assert run({"name": name, "image": image}, True, runner) == {"changed": True}
    assert docker("inspect", name).returncode != 0
    run({"name": name, "image": image}, False, runner)
    assert run({"name": name, "state": "absent"}, True, runner)["changed"] is True
    assert inspect(name)["State"]["Running"] is True  # type: ignore[index]


@pytest.mark.docker
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


@pytest.mark.docker
def test_absent_keeps_an_image_that_a_container_uses_with_a_warning(image: str, name: str) -> None:
    in_use = f"{image}-in-use"
    built = subprocess.run(
        ["docker", "build", "--quiet", "--tag", in_use, "-"],
        input=f'FROM {image}\nLABEL melk-unit.in-use="{name}"\n',
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    user = f"{name}-user"
    try:
        assert docker("create", "--name", user, in_use).returncode == 0
        result = run({"name": name, "state": "absent", "remove_images": [in_use]}, False, runner)
        assert result["removed_images"] == []
        assert len(result["warnings"]) == 1
        assert result["warnings"][0].startswith(f"image {in_use} was kept: ")
        assert "is using its referenced image" in result["warnings"][0]
        assert docker("image", "inspect", in_use).returncode == 0
    finally:
        docker("rm", "--force", user)
        docker("image", "rm", "--force", in_use)


HICCUP = (
    125,
    "",
    "docker: Error response from daemon: failed to create task for container: failed to "
    "create shim task: OCI runtime create failed: runc create failed: unable to start "
    "container process: waiting for init preliminary setup: read init-p: connection reset "
    "by peer: unknown.\n",
)


class Sequenced:
    """A fake docker whose `docker run` answers in turn from a list (then succeeds)."""

    def __init__(self, *runs: tuple[int, str, str]) -> None:
        self.runs = list(runs)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        if argv[:2] == ["docker", "run"] and self.runs:
            return self.runs.pop(0)
        return (0, "172.17.0.5\n", "") if argv[:2] == ["docker", "inspect"] else (0, "", "")


def test_a_runtime_hiccup_at_the_start_is_retried_once_after_removing_the_container() -> None:
    docker = Sequenced(HICCUP, (0, "f00d\n", ""))
    result = run(STARTED, False, docker)
    assert result["container_id"] == "f00d"
    assert result["warnings"] == [
        f"starting {NAME} failed in the container runtime, retried once: {HICCUP[2].strip()}"
    ]
    rm = ["docker", "rm", "--force", NAME]
    assert docker.calls == [rm, RUN, rm, RUN, ADDRESS]


def test_a_second_runtime_hiccup_fails_the_start() -> None:
    docker = Sequenced(HICCUP, HICCUP)
    result = run(STARTED, False, docker)
    assert result["failed"] is True
    assert result["msg"].startswith(f"starting container {NAME} from {IMAGE} failed (exit 125)")
    assert [c[:2] for c in docker.calls].count(["docker", "run"]) == 2


@pytest.mark.parametrize(
    "answer",
    [
        (125, "", "docker: Error response from daemon: No such image: reg.example/melk-ai:abc.\n"),
        (125, "", "docker: Error response from daemon: Conflict. The container name is in use.\n"),
        (127, "", "OCI runtime create failed: exec: app: not found\n"),
    ],
)
def test_other_start_failures_are_not_retried(answer: tuple[int, str, str]) -> None:
    docker = Sequenced(answer)
    assert run(STARTED, False, docker)["failed"] is True
    assert docker.calls == [["docker", "rm", "--force", NAME], RUN]
