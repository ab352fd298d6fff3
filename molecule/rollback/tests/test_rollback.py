"""Verify rollback: v1 serves again after a rollback from v2 by a sha prefix."""

from __future__ import annotations

import json
import os
import sys

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, os.environ["MOLECULE_PROJECT_DIRECTORY"])
from testbed.molecule_checks import (
    FETCH,
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


@pytest.fixture(scope="module")
def state(host) -> dict:
    return read_state(host)


def test_rollback_recorded_once(state):
    history = state["history"]
    # newest first: the rollback (converge; the second converge adds nothing),
    # then prepare's deploys of v2 and v1
    assert [(h["sha"], h["kind"], h["status"]) for h in history] == [
        (V1, "rollback", "succeeded"),
        (V2, "deploy", "succeeded"),
        (V1, "deploy", "succeeded"),
    ]
    assert history[0]["from_sha"] == V2
    # the full sha was resolved from the 8-character prefix
    assert len(history[0]["sha"]) == 40


def test_current_release_is_v1_beside_v2s_slot(state):
    history = state["history"]
    assert state["current"]["sha"] == V1
    assert state["current"]["slot"] == history[0]["slot"]
    assert history[0]["slot"] != history[1]["slot"], "v1 must start beside v2, in the other slot"


def test_v1_serves_and_v2_runs_on_as_the_standby(host, state):
    slot = state["current"]["slot"]
    other = "blue" if slot == "green" else "green"
    names = host.check_output("docker ps -a --filter name=^melk-ai- --format '{{.Names}}'")
    assert sorted(names.split()) == sorted([f"melk-ai-{slot}", f"melk-ai-{other}"])
    assert host.docker(f"melk-ai-{slot}").is_running
    standby = json.loads(
        host.check_output(f"docker inspect --format '{{{{json .Config.Labels}}}}' melk-ai-{other}")
    )
    assert standby["io.melk.sha"] == V2
    labels = json.loads(
        host.check_output(f"docker inspect --format '{{{{json .Config.Labels}}}}' melk-ai-{slot}")
    )
    assert labels["io.melk.sha"] == V1
    assert labels["io.melk.slot"] == slot


def test_proxy_serves_v1(host, state):
    body = json.loads(host.check_output(FETCH.format(url="http://127.0.0.1:80/version")))
    assert body["version"] == "v1"
    slot = state["current"]["slot"]
    upstream = host.file("/etc/nginx/edge-proxy/melk-ai.upstream").content_string
    assert f"# slot {slot}" in upstream.splitlines()
    # the kernel forwards the front address to that slot's container (nft -f applied)
    address = host.check_output(
        f"docker inspect --format '{{{{.NetworkSettings.IPAddress}}}}' melk-ai-{slot}"
    )
    chain = host.check_output("nft list chain ip edge_proxy app-melk-ai")
    assert f"dnat to {address}:8000" in chain


def test_rolled_back_release_image_is_kept(host):
    # v2 stays retained: a deploy of it again needs no registry
    for sha in (V1, V2):
        assert (
            host.run(f"docker image inspect --format '{{{{.Id}}}}' melk-testbed/melk-ai:{sha}").rc
            == 0
        )


def test_no_deploy_lock_left(host):
    assert not host.file(f"{STATE_DIR}/deploy.lock").exists


def test_secret_not_in_ansible_output():
    lines = ansible_log_lines()
    assert any("TASK [rollback : " in line for line in lines)
    leaks = secret_leaks(lines)
    assert not leaks, "\n".join(leaks)
