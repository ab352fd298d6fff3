"""Unit tests for filter_plugins/registry_login.py: the registry of app_image, the address
its login is kept under, and the credentials given as a pair (never echoing the password)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from playbook_harness import ANSIBLE_PLAYBOOK, ROOT, json_result, playbook_env
from registry_login import (
    DOCKER_HUB,
    DOCKER_HUB_LOGIN,
    FilterModule,
    image_registry,
    registry_credentials_error,
    registry_login_plan,
    registry_login_url,
)

PASSWORD = "pA55-{{ 7*7 }}-s3cret"  # a test value that must never be echoed


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("ghcr.io/acme/melk-ai", "ghcr.io"),
        ("registry.test:5000/melk-ai", "registry.test:5000"),
        ("registry.example.com/team/sub/app", "registry.example.com"),
        ("localhost/app", "localhost"),
        ("localhost:5000/app", "localhost:5000"),
        ("127.0.0.1:5123/melk-ai", "127.0.0.1:5123"),
        ("[::1]:5000/app", "[::1]:5000"),
        ("acme/melk-ai", DOCKER_HUB),
        ("melk-ai", DOCKER_HUB),
        ("library/nginx", DOCKER_HUB),
        ("docker.io/library/nginx", DOCKER_HUB),
        ("index.docker.io/acme/app", DOCKER_HUB),
        ("localhostx/app", DOCKER_HUB),
        ("registry.test:5000", DOCKER_HUB),  # no '/': a Hub name, as Docker reads it
    ],
)
def test_the_registry_of_an_image(image: str, registry: str) -> None:
    assert image_registry(image) == registry


_COMPONENT = st.from_regex(r"[a-z0-9]+(?:-[a-z0-9]+)*", fullmatch=True)


@given(st.lists(_COMPONENT, min_size=1, max_size=3))
def test_a_name_without_a_registry_host_is_docker_hub(parts: list[str]) -> None:
    image = "/".join(parts)
    expected = parts[0] if parts[0] == "localhost" and len(parts) > 1 else DOCKER_HUB
    assert image_registry(image) == expected


@given(
    st.lists(_COMPONENT, min_size=2, max_size=3),
    st.one_of(st.none(), st.integers(1, 65535)),
    st.lists(_COMPONENT, min_size=1, max_size=3),
)
def test_a_host_with_a_dot_or_a_port_is_the_registry(
    labels: list[str], port: int | None, path: list[str]
) -> None:
    host = ".".join(labels) + ("" if port is None else f":{port}")
    expected = DOCKER_HUB if host in {"docker.io", "index.docker.io"} else host
    assert image_registry(f"{host}/{'/'.join(path)}") == expected


@pytest.mark.parametrize(
    ("registry", "url"),
    [
        (DOCKER_HUB, DOCKER_HUB_LOGIN),
        ("index.docker.io", DOCKER_HUB_LOGIN),
        ("ghcr.io", "ghcr.io"),
        ("registry.test:5000", "registry.test:5000"),
        ("localhost", "localhost"),
    ],
)
def test_the_login_address_of_a_registry(registry: str, url: str) -> None:
    assert registry_login_url(registry) == url


@pytest.mark.parametrize(
    ("username", "password"),
    [(None, None), ("", ""), (None, ""), ("", None), ("ci-bot", PASSWORD), ("a", "b")],
)
def test_both_or_neither_is_accepted(username: object, password: object) -> None:
    assert registry_credentials_error(username, password) == ""


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        (
            None,
            PASSWORD,
            "app_registry_password is set but app_registry_username is not: give both "
            "(the registry login of app_image) or neither (no login)",
        ),
        (
            "",
            PASSWORD,
            "app_registry_password is set but app_registry_username is not: give both "
            "(the registry login of app_image) or neither (no login)",
        ),
        (
            "ci-bot",
            None,
            "app_registry_username is set but app_registry_password is not: give both "
            "(the registry login of app_image) or neither (no login)",
        ),
        (
            "ci-bot",
            "",
            "app_registry_username is set but app_registry_password is not: give both "
            "(the registry login of app_image) or neither (no login)",
        ),
        (
            "ci bot",
            PASSWORD,
            "app_registry_username 'ci bot' is invalid: it must be a string of at most 255 "
            "characters without whitespace or control characters",
        ),
        (
            ["ci-bot"],
            PASSWORD,
            "app_registry_username as given is invalid: it must be a string of at most 255 "
            "characters without whitespace or control characters",
        ),
        (
            "u" * 256,
            PASSWORD,
            "app_registry_username as given is invalid: it must be a string of at most 255 "
            "characters without whitespace or control characters",
        ),
        (
            "ci-bot",
            123456,
            "app_registry_password is invalid: it must be a string (quote it in YAML)",
        ),
    ],
)
def test_a_half_or_bad_pair_is_refused_with_what_to_give(
    username: object, password: object, message: str
) -> None:
    assert registry_credentials_error(username, password) == message


@given(
    st.one_of(st.none(), st.just(""), st.text("ab -\n", min_size=1), st.integers()),
    st.one_of(st.none(), st.text(min_size=1).map(lambda text: "\u2603" + text)),
)
def test_the_password_is_never_in_the_message(username: object, password: str | None) -> None:
    # The passwords start with a character no message or username here has.
    message = registry_credentials_error(username, password)
    assert "\u2603" not in message
    assert message.startswith("app_registry_") or message == ""


def test_the_filters_are_exposed_under_their_names() -> None:
    assert set(FilterModule().filters()) == {
        "image_registry",
        "registry_login_url",
        "registry_credentials_error",
        "registry_login_plan",
    }


@pytest.mark.parametrize(
    ("image", "username", "pull", "line"),
    [
        (
            "ghcr.io/acme/melk-ai",
            "ci-bot",
            True,
            "would log in to ghcr.io as ci-bot (the deploy user's Docker client), then pull",
        ),
        (
            "registry.test:5000/melk-ai",
            "ci-bot",
            True,
            "would log in to registry.test:5000 as ci-bot (the deploy user's Docker client), "
            "then pull",
        ),
        (
            "acme/melk-ai",
            "ci-bot",
            True,
            "would log in to docker.io as ci-bot (the deploy user's Docker client), then pull",
        ),
        (
            "ghcr.io/acme/melk-ai",
            "ci-bot",
            False,
            "none needed: no pull (credentials for ghcr.io given)",
        ),
        ("ghcr.io/acme/melk-ai", "", True, "none (no app_registry_username given)"),
        ("ghcr.io/acme/melk-ai", None, False, "none (no app_registry_username given)"),
    ],
)
def test_the_dry_runs_login_line_says_what_the_login_tasks_would_do(
    image: str, username: object, pull: bool, line: str
) -> None:
    assert registry_login_plan(image, username, pull) == line


def plan_task() -> dict[str, Any]:
    """The dry run's plan task of the role's step 4, as main.yml has it."""

    def tasks(node: object) -> Iterator[dict[str, Any]]:
        for item in node if isinstance(node, list) else []:
            if isinstance(item, dict):
                yield item
                for key in ("block", "rescue", "always"):
                    yield from tasks(item.get(key))

    path = ROOT / "roles" / "app_deploy" / "tasks" / "main.yml"
    found = [t for t in tasks(yaml.safe_load(path.read_text())) if t.get("name") == PLAN_TASK]
    assert len(found) == 1, f"{path} has no task {PLAN_TASK!r}"
    return found[0]


def role_vars() -> dict[str, Any]:
    """app_deploy's vars/main.yml, the values the role's tasks see besides facts."""
    path = ROOT / "roles" / "app_deploy" / "vars" / "main.yml"
    return dict(yaml.safe_load(path.read_text()))


PLAN_PASSWORD = "pA55-plan-s3cret"  # a test value that must never be printed
PLAN_TASK = (
    "Say that an earlier run was interrupted, that this release already serves, "
    "or what this run would do (check mode)"
)
SHA = "0123456789abcdef0123456789abcdef01234567"
# What the role knows when it prints the plan (a deploy of SHA into the green slot,
# blue serving): the facts of its steps 2-4.
PLAN_FACTS: dict[str, Any] = {
    "app_deploy_action": "deploy",
    "app_deploy_name": "melk-ai",
    "app_deploy_dir": "/opt/melk-ai",
    "app_deploy_image": "registry.test:5000/melk-ai",
    "app_deploy_env": None,
    "app_deploy_pull": True,
    "app_deploy_noop": False,
    "app_deploy_standby_switch": False,
    "app_deploy_release_command": [],
    "app_deploy_health_path": "/health",
    "app_deploy_proxy_port": 80,
    "app_deploy_verify_seconds": 10,
    "app_deploy_current": {"sha": "f" * 40, "slot": "blue"},
    "app_deploy_target": {"sha": SHA, "slot": "green", "port": 18002},
    "__app_deploy_keeps_standby": True,
    "__app_deploy_lock": {"image_tags": [], "checksums": {"/opt/melk-ai/app.env": "ab12"}},
    "app_deploy_registry_username": "",
    "app_deploy_registry_password": "",
    "app_deploy_proxy_record_file": "/etc/nginx/edge-proxy/melk-ai.json",
    "edge_proxy_settings_digest": "d" * 64,
}


def dry_run_plan(tmp_path: Path, **facts: Any) -> list[str]:
    """The plan the role's task prints in check mode, run on the controller with PLAN_FACTS
    and `facts` (the password in them must not appear in any output)."""
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "connection": "local",
        # the role's vars (vars/main.yml: app.env's checksum and changes among them),
        # as the task has them in the role, then the facts of its steps 2-4
        "vars": {**role_vars(), **PLAN_FACTS, **facts},
        "tasks": [plan_task()],
    }
    playbook = tmp_path / "plan.yml"
    playbook.write_text(yaml.safe_dump([play]))
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "localhost,", "--check", str(playbook)],
        cwd=ROOT,
        env=playbook_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    password = str(facts.get("app_deploy_registry_password", ""))
    assert not password or password not in result.stdout + result.stderr
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    task = json_result(result.stdout, result.stderr)["plays"][0]["tasks"][0]
    return list(task["hosts"]["localhost"]["msg"])


@pytest.mark.playbook
def test_the_dry_run_plan_says_it_would_log_in_never_with_the_password(tmp_path: Path) -> None:
    plan = dry_run_plan(
        tmp_path, app_deploy_registry_username="ci-bot", app_deploy_registry_password=PLAN_PASSWORD
    )
    image = plan.index("image    would be pulled")
    assert plan[image + 1] == (
        "login    would log in to registry.test:5000 as ci-bot (the deploy user's Docker "
        "client), then pull"
    )


@pytest.mark.playbook
@pytest.mark.parametrize(
    ("facts", "line"),
    [
        ({}, "login    none (no app_registry_username given)"),
        (
            {
                "app_deploy_registry_username": "ci-bot",
                "app_deploy_registry_password": PLAN_PASSWORD,
                "__app_deploy_lock": {"image_tags": [SHA], "checksums": {}},
            },
            "login    none needed: no pull (credentials for registry.test:5000 given)",
        ),
        (
            {
                "app_deploy_registry_username": "ci-bot",
                "app_deploy_registry_password": PLAN_PASSWORD,
                "app_deploy_action": "rollback",
                "app_deploy_pull": False,
            },
            "login    none needed: no pull (credentials for registry.test:5000 given)",
        ),
    ],
)
def test_the_dry_run_plan_says_when_no_login_would_happen(
    tmp_path: Path, facts: dict[str, Any], line: str
) -> None:
    assert line in dry_run_plan(tmp_path, **facts)


def lock_with_record(digest: str) -> dict[str, Any]:
    """What the lock's task read: the app's edge record naming that settings digest."""
    record = json.dumps({"app": "melk-ai", "settings_digest": digest})
    return {
        **PLAN_FACTS["__app_deploy_lock"],
        "files": {PLAN_FACTS["app_deploy_proxy_record_file"]: record},
    }


@pytest.mark.playbook
@pytest.mark.parametrize(
    ("facts", "line"),
    [
        (
            {"__app_deploy_lock": lock_with_record("d" * 64)},
            "edge     settings as on the host, nothing to apply",
        ),
        (
            {"__app_deploy_lock": lock_with_record("e" * 64)},
            "edge     settings differ from those on the host: would be applied first (nginx "
            "reloads only if the site changes)",
        ),
        (
            {"__app_deploy_lock": lock_with_record("e" * 64), "app_deploy_action": "rollback"},
            "edge     not applied by a rollback",
        ),
    ],
)
def test_the_dry_run_plan_says_whether_the_edge_settings_would_be_applied(
    tmp_path: Path, facts: dict[str, Any], line: str
) -> None:
    assert line in dry_run_plan(tmp_path, **facts)


@pytest.mark.playbook
@pytest.mark.parametrize("reconciled", [True, False])
def test_the_dry_run_plan_first_says_when_an_earlier_run_was_interrupted(
    tmp_path: Path, reconciled: bool
) -> None:
    current = {"sha": "f" * 40, "slot": "blue", "reconciled": reconciled}
    plan = dry_run_plan(tmp_path, app_deploy_current=current)
    note = (
        "The proxy serves ffffffffffff (slot blue), which the release history does not record "
        "as current: an earlier run was interrupted after its switch. Going on from what serves."
    )
    expected = [note] if reconciled else []
    expected.append("DRY RUN on localhost, nothing was changed. This deploy would:")
    assert plan[: len(expected)] == expected
