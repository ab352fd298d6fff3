"""Verify docker_host on the converged server: engine, Compose v2, daemon.json, users."""

from __future__ import annotations

import json
import os

import pytest
import testinfra.utils.ansible_runner

from testbed.servers import load_image

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")


def test_docker_service_enabled_and_running(host):
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_compose_is_v2(host):
    out = host.check_output("docker compose version --short").strip().lstrip("v")
    assert int(out.split(".")[0]) >= 2, out


def test_daemon_json_merges_options_over_defaults(host):
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["live-restore"] is True
    assert daemon["log-driver"] == "json-file"
    # recursive merge: the user's max-file, the default's max-size
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "5"}
    assert daemon["default-address-pools"] == [{"base": "10.213.0.0/16", "size": 24}]
    assert host.file("/etc/docker/daemon.json").mode == 0o644


def test_running_engine_uses_daemon_json(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is True
    assert info["LoggingDriver"] == "json-file"


def test_deploy_user_runs_docker_without_sudo(host):
    assert "docker" in host.user("deploy").groups
    result = host.run("su - deploy -c 'docker ps --format {{.ID}}'")
    assert result.rc == 0, result.stderr


@pytest.fixture(scope="module")
def busybox_loaded(host):
    """Load the test bed's tiny image into the inner engine (no registry, no pull)."""
    image = os.environ["TESTBED_BUSYBOX_IMAGE"]
    load_image(host.backend.get_hostname(), image)
    return image


def test_inner_container_really_runs(host, busybox_loaded):
    result = host.run(f"su - deploy -c 'docker run --rm {busybox_loaded} echo inner-ok'")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "inner-ok"
