"""Unit tests for module_utils/melk_docker.py's parse_state: the container state that
health_probe judges, read from docker inspect's one line."""

from __future__ import annotations

import pytest
from ansible.module_utils.melk_docker import parse_state


@pytest.mark.parametrize(
    ("stdout", "exit_code"),
    [("false 0 exited 3", 3), ("false 0 exited -1", -1), ("false 0 exited X3", None)],
)
def test_an_exit_code_that_is_not_a_number_is_none(stdout: str, exit_code: int | None) -> None:
    assert parse_state(0, stdout)["exit_code"] == exit_code


@pytest.mark.parametrize(("restarts", "expected"), [("0", 0), ("12", 12), ("-", -1)])
def test_a_restart_count_that_is_not_a_number_is_minus_one(restarts: str, expected: int) -> None:
    assert parse_state(0, f"true {restarts} running 0")["restarts"] == expected
