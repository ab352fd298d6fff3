"""Ansible filters for the registry login of a deploy: which registry an image is pulled
from, the address Docker keeps that registry's credentials under, and whether the
credentials (app_registry_username, app_registry_password) are given as a pair.

Plain, pure functions (no I/O, inputs never mutated), each exposed by ``FilterModule`` under
its own name, so they are unit tested without Ansible (tests/unit/test_registry_login.py).
Like the other validators, ``registry_credentials_error`` returns ``''`` when the input is
valid and otherwise a one-line message that names the variables; it never contains the
password. ``registry_login_plan`` is the dry run's (--check) line on the login.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

# Docker Hub: the registry of an image whose name has no registry host, and the address
# `docker login` stores its credentials under in ~/.docker/config.json.
DOCKER_HUB = "docker.io"
DOCKER_HUB_LOGIN = "https://index.docker.io/v1/"
_DOCKER_HUB_NAMES = frozenset({DOCKER_HUB, "index.docker.io"})

USERNAME = "app_registry_username"
PASSWORD = "app_registry_password"  # noqa: S105  # the variable's name, not a password


def image_registry(image: str) -> str:
    """The registry an image repository is pulled from, as Docker decides it: the part
    before the first '/' when that part contains '.' or ':' or is 'localhost'
    ('ghcr.io/acme/app' -> 'ghcr.io', 'registry.test:5000/app' -> 'registry.test:5000'),
    otherwise Docker Hub ('acme/app' and 'app' -> 'docker.io')."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB if first in _DOCKER_HUB_NAMES else first
    return DOCKER_HUB


def registry_login_url(registry: str) -> str:
    """The address a login to registry is kept under in ~/.docker/config.json, as
    `docker login` writes it: Docker Hub's index URL, any other registry's host[:port]."""
    return DOCKER_HUB_LOGIN if registry in _DOCKER_HUB_NAMES else registry


def _given(value: object) -> bool:
    return value is not None and value != ""


def _has_space_or_control(text: str) -> bool:
    return any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in text)


def registry_credentials_error(username: object, password: object) -> str:
    """'' when both credentials are given (a login) or neither (no login), else why not.

    The username is a non-empty string without whitespace or control characters, the
    password any non-empty string. The message names the variables and shows the username
    when it is a short string, never the password.
    """
    if not _given(username) and not _given(password):
        return ""
    if not _given(username):
        return (
            f"{PASSWORD} is set but {USERNAME} is not: give both (the registry login of "
            "app_image) or neither (no login)"
        )
    if not _given(password):
        return (
            f"{USERNAME} is set but {PASSWORD} is not: give both (the registry login of "
            "app_image) or neither (no login)"
        )
    if not isinstance(username, str) or _has_space_or_control(username) or len(username) > 255:
        shown = repr(username) if isinstance(username, str) and len(username) <= 64 else "as given"
        return (
            f"{USERNAME} {shown} is invalid: it must be a string of at most 255 characters "
            "without whitespace or control characters"
        )
    if not isinstance(password, str):
        return f"{PASSWORD} is invalid: it must be a string (quote it in YAML)"
    return ""


def registry_login_plan(image: str, username: object, pull: bool) -> str:
    """The dry run's line on the registry login (after its 'login    ' label): what a deploy
    of an image from app_image's repository would do, as the login tasks decide it. A login
    happens when credentials are given (a username: the pair was checked on the controller)
    and the image is to be pulled (`pull`: not on the host, and the action pulls). Never
    given the password, it cannot show it."""
    if not _given(username):
        return "none (no app_registry_username given)"
    registry = image_registry(image)
    if not pull:
        return f"none needed: no pull (credentials for {registry} given)"
    return f"would log in to {registry} as {username} (the deploy user's Docker client), then pull"


class FilterModule:
    """Ansible filter plugin: each function above under its own name."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        functions: tuple[Callable[..., Any], ...] = (
            image_registry,
            registry_login_url,
            registry_credentials_error,
            registry_login_plan,
        )
        return {function.__name__: function for function in functions}
