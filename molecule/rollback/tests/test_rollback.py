"""Verify rollback: v1 serves again after a rollback from v2 by a sha prefix."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, os.environ["MOLECULE_PROJECT_DIRECTORY"])
from testbed.app import release_sha  # a pure function of the version

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")

SENTINEL = "molecule-sentinel-123"
V1 = release_sha("v1")
V2 = release_sha("v2")
STATE_DIR = "/opt/melk-ai"
SLOT_PORTS = {"blue": 18001, "green": 18002}

FETCH = (
    'python3 -c "import sys, urllib.request\n'
    'print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())" {url}'
)


@pytest.fixture(scope="module")
def state(host) -> dict:
    return json.loads(host.file(f"{STATE_DIR}/releases.json").content_string)


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


def test_only_v1_runs(host, state):
    slot = state["current"]["slot"]
    names = host.check_output("docker ps -a --filter name=^melk-ai- --format '{{.Names}}'")
    assert names.split() == [f"melk-ai-{slot}"]
    assert host.docker(f"melk-ai-{slot}").is_running
    labels = json.loads(
        host.check_output(f"docker inspect --format '{{{{json .Config.Labels}}}}' melk-ai-{slot}")
    )
    assert labels["io.melk.sha"] == V1
    assert labels["io.melk.slot"] == slot


def test_proxy_serves_v1(host, state):
    body = json.loads(host.check_output(FETCH.format(url="http://127.0.0.1:80/version")))
    assert body["version"] == "v1"
    port = SLOT_PORTS[state["current"]["slot"]]
    upstream = host.file("/etc/nginx/edge-proxy/melk-ai.upstream").content_string
    assert f"server 127.0.0.1:{port} " in upstream


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
    log = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.log"
    lines = log.read_text().splitlines()
    # Up to the recap of the last playbook run (idempotence): testinfra's own
    # ansible-inventory dump (the inventory holds app_env) is logged after it.
    last_recap = max(i for i, line in enumerate(lines) if "PLAY RECAP" in line)
    lines = lines[: last_recap + 2]
    assert any("TASK [rollback : " in line for line in lines)
    leaks = [line.replace(SENTINEL, "<SECRET>")[:300] for line in lines if SENTINEL in line]
    assert not leaks, "\n".join(leaks)
