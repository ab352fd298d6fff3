"""Verify app_deploy: v2 serves through the proxy after a blue/green switch from v1.

The secret of app_env must reach the app and nowhere else, so no command here
prints it (the verifier's own commands are logged too): its presence is
checked through hashes, and docker inspect only with a format.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, os.environ["MOLECULE_PROJECT_DIRECTORY"])
from testbed.molecule_checks import (
    FETCH,
    SENTINEL,
    SLOT_PORTS,
    STATE_DIR,
    V1,
    V2,
    ansible_log_lines,
    read_state,
    secret_leaks,
)

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")


def inspect(host, container: str, fmt: str) -> str:
    return host.check_output(f"docker inspect --format '{fmt}' {container}")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def state(host) -> dict:
    return read_state(host)


@pytest.fixture(scope="module")
def containers(host) -> list[str]:
    out = host.check_output("docker ps -a --filter name=^melk-ai- --format '{{.Names}}'")
    return out.split()


def test_secret_not_in_ansible_output():
    lines = ansible_log_lines()
    # prepare (deploy of v1), converge and idempotence (v2) ran at -v
    assert any("Deploy the release" in line for line in lines)
    assert sum("TASK [app_deploy : Start the new release in slot" in line for line in lines) >= 2
    leaks = secret_leaks(lines)
    assert not leaks, "\n".join(leaks)


def test_release_history(state):
    assert state["current"]["sha"] == V2
    history = state["history"]
    # newest first: the switch to v2 (from v1), then the deploy of v1 in prepare
    assert [(h["sha"], h["kind"], h["status"]) for h in history] == [
        (V2, "deploy", "succeeded"),
        (V1, "deploy", "succeeded"),
    ], "the second converge must not record another deploy"
    assert history[0]["from_sha"] == V1
    assert history[1]["from_sha"] is None
    assert history[0]["slot"] != history[1]["slot"], "v2 must start beside v1, in the other slot"
    assert state["current"]["slot"] == history[0]["slot"]


def test_the_new_release_runs_and_the_one_before_is_the_standby(host, state, containers):
    slot = state["current"]["slot"]
    other = "blue" if slot == "green" else "green"
    # app_keep_standby (default): v1 keeps running in the other slot, without traffic
    assert sorted(containers) == sorted([f"melk-ai-{slot}", f"melk-ai-{other}"])
    assert host.docker(f"melk-ai-{slot}").is_running
    assert host.docker(f"melk-ai-{other}").is_running
    standby = json.loads(inspect(host, f"melk-ai-{other}", "{{json .Config.Labels}}"))
    assert standby["io.melk.sha"] == V1
    labels = json.loads(inspect(host, f"melk-ai-{slot}", "{{json .Config.Labels}}"))
    assert labels["io.melk.sha"] == V2
    assert labels["io.melk.slot"] == slot
    assert labels["io.melk.app"] == "melk-ai"
    assert SENTINEL not in json.dumps(labels)
    image = inspect(host, f"melk-ai-{slot}", "{{.Config.Image}}").strip()
    assert image == f"melk-testbed/melk-ai:{V2}"


def test_release_published_on_loopback_only(host, state):
    port = SLOT_PORTS[state["current"]["slot"]]
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_proxy_serves_v2(host):
    body = json.loads(host.check_output(FETCH.format(url="http://127.0.0.1:80/version")))
    assert body["version"] == "v2"
    # app_env reached the app (the app shows names only, never values)
    assert "APP_SECRET_TOKEN" in body["env_names"]


def test_proxy_points_at_the_serving_slot(host, state):
    slot = state["current"]["slot"]
    upstream = host.file("/etc/nginx/edge-proxy/melk-ai.upstream").content_string
    assert f"# slot {slot}" in upstream.splitlines()
    # the kernel forwards the front address to that slot's container (nft -f applied)
    address = host.check_output(
        f"docker inspect --format '{{{{.NetworkSettings.IPAddress}}}}' melk-ai-{slot}"
    )
    chain = host.check_output("nft list chain ip edge_proxy app-melk-ai")
    assert f"dnat to {address}:8000" in chain
    assert host.run("nginx -t").rc == 0


def test_state_directory_belongs_to_deploy(host):
    directory = host.file(STATE_DIR)
    assert directory.is_directory
    assert directory.user == "deploy"
    assert directory.mode == 0o750


def test_env_file_is_private_and_holds_the_secret(host):
    env_file = host.file(f"{STATE_DIR}/app.env")
    assert env_file.user == "deploy"
    assert env_file.mode == 0o600
    expected = sha256(f"APP_SECRET_TOKEN={SENTINEL}\n")
    assert host.check_output(f"sha256sum < {STATE_DIR}/app.env").split()[0] == expected


def test_secret_reached_the_container_env(host, state):
    slot = state["current"]["slot"]
    line = host.check_output(
        "docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "
        f"melk-ai-{slot} | grep '^APP_SECRET_TOKEN=' | tr -d '\\n' | sha256sum"
    )
    assert line.split()[0] == sha256(f"APP_SECRET_TOKEN={SENTINEL}")


def test_secret_not_in_history(host):
    assert SENTINEL not in host.file(f"{STATE_DIR}/releases.json").content_string


def test_previous_release_image_is_kept_for_rollback(host):
    for sha in (V1, V2):
        assert (
            host.run(f"docker image inspect --format '{{{{.Id}}}}' melk-testbed/melk-ai:{sha}").rc
            == 0
        )


def test_no_deploy_lock_left(host):
    assert not host.file(f"{STATE_DIR}/deploy.lock").exists
