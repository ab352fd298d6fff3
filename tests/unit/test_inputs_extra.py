"""Unit tests for filter_plugins/inputs_extra.py: the sha forms a deploy takes (and that
docker-publish.yml pushes exactly those tags), daemon.json keys that reach the engine's API,
and when app.env is written."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from inputs_extra import (
    ALLOW_API_OPTIONS,
    FULL_SHA_LENGTH,
    SHORT_SHA_LENGTH,
    FilterModule,
    daemon_options_error,
    deploy_sha_error,
    env_file_write,
)

ROOT = Path(__file__).resolve().parents[2]
SHA = "0123456789abcdef0123456789abcdef01234567"
HEX = "0123456789abcdef"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- deploy sha


@pytest.mark.parametrize("value", [SHA, SHA[:7]])
def test_deploy_takes_the_full_and_the_seven_character_sha(value: str) -> None:
    assert deploy_sha_error(value) == ""


@given(st.text(HEX, min_size=8, max_size=39))
def test_a_prefix_no_tag_names_is_refused_with_the_forms_that_work(value: str) -> None:
    message = deploy_sha_error(value)
    assert f"({len(value)} characters)" in message
    assert "40-character" in message and "first 7 characters" in message
    assert "rollback" in message


@pytest.mark.parametrize("value", ["", "ABCDEF1", "g" * 7, "abc1234; id", None, 1234567])
def test_anything_else_is_refused_without_echoing_it(value: object) -> None:
    message = deploy_sha_error(value)
    assert message.startswith("sha as given cannot be deployed")


def test_a_too_long_hex_string_is_refused_too() -> None:
    assert "(41 characters)" in deploy_sha_error(SHA + "0")


def published_tags() -> list[str]:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "docker-publish.yml").read_text())
    steps: list[dict[str, Any]] = workflow["jobs"]["publish"]["steps"]
    (meta,) = [s for s in steps if str(s.get("uses", "")).startswith("docker/metadata-action@")]
    assert meta["env"]["DOCKER_METADATA_SHORT_SHA_LENGTH"] == str(SHORT_SHA_LENGTH)
    return [line.strip() for line in meta["with"]["tags"].splitlines() if "type=sha" in line]


def test_docker_publish_pushes_exactly_the_sha_forms_a_deploy_takes() -> None:
    # metadata-action: format=long is the 40-character sha, format=short its first
    # DOCKER_METADATA_SHORT_SHA_LENGTH characters; prefix= drops the default 'sha-'.
    assert sorted(published_tags()) == [
        "type=sha,format=long,prefix=",
        "type=sha,format=short,prefix=",
    ]
    assert FULL_SHA_LENGTH == 40


# --------------------------------------------------------------------------- daemon.json


@pytest.mark.parametrize(
    "options",
    [
        {"hosts": ["tcp://0.0.0.0:2375"]},
        {"tls": True},
        {"tlsverify": False},
        {"tlscacert": "/x"},
        {"tlscert": "/x"},
        {"tlskey": "/x"},
        {"TLSVerify": True},
        {"log-level": "warn", "hosts": ["unix:///var/run/docker.sock"]},
    ],
)
def test_keys_that_reach_the_engine_api_are_refused_unless_allowed(
    options: dict[str, object],
) -> None:
    message = daemon_options_error(options)
    assert message.startswith("docker_daemon_options sets ")
    assert ALLOW_API_OPTIONS in message
    for key in options:
        if key != "log-level":
            assert key in message
    assert daemon_options_error(options, True) == ""
    # Only a real boolean true allows them (the playbooks pass `| bool`).
    assert daemon_options_error(options, "true") != ""


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"insecure-registries": ["r:5000"]},
        {"log-opts": {"max-file": "5"}},
        {"live-restore": True},
    ],
)
def test_other_settings_pass(options: dict[str, object]) -> None:
    assert daemon_options_error(options) == ""


def test_a_non_mapping_is_refused() -> None:
    assert "must be a mapping" in daemon_options_error(["hosts"])


# --------------------------------------------------------------------------- app.env


@pytest.mark.parametrize("checksum", ["", None, sha256(""), sha256("A=1\n"), "f" * 64])
def test_app_env_not_given_never_writes(checksum: str | None) -> None:
    assert env_file_write(checksum, None) is False


@pytest.mark.parametrize(
    ("checksum", "content", "write"),
    [
        ("", "A=1\n", True),  # no file yet: the secrets go in
        ("", "", False),  # no file, app_env {}: the empty file created first is it
        (sha256("A=1\n"), "A=1\n", False),  # unchanged: no task runs
        (sha256("A=1\n"), "A=2\n", True),
        (sha256("A=1\n"), "", True),  # app_env: {} given explicitly empties it
        (sha256(""), "", False),
    ],
)
def test_app_env_given_writes_when_it_differs(checksum: str, content: str, write: bool) -> None:
    assert env_file_write(checksum, content) is write


def test_the_plugin_exposes_each_filter_under_its_name() -> None:
    assert set(FilterModule().filters()) == {
        "deploy_sha_error",
        "daemon_options_error",
        "env_file_write",
    }
