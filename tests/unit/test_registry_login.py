"""Unit tests for filter_plugins/registry_login.py: the registry of app_image, the address
its login is kept under, and the credentials given as a pair (never echoing the password)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from registry_login import (
    DOCKER_HUB,
    DOCKER_HUB_LOGIN,
    FilterModule,
    image_registry,
    registry_credentials_error,
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
    }
