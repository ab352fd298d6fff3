"""Unit tests for filter_plugins/input_checks.py: the input checks and the env file."""

from __future__ import annotations

import re

import input_checks
import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import assume, given
from hypothesis import strategies as st
from input_checks import (
    FilterModule,
    app_name_error,
    env_error,
    env_file_content,
    health_path_error,
    image_error,
    port_error,
    sha_error,
)

HEX = "0123456789abcdef"


# --------------------------------------------------------------------------- sha


@pytest.mark.parametrize("value", ["abc1234", "a" * 40, "0123456789abcdef0123456789abcdef01234567"])
def test_sha_valid(value: str) -> None:
    assert sha_error(value) == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "abc123",
            "sha 'abc123' is invalid: it must be 7 to 40 lowercase hex characters (0-9, a-f)",
        ),
        ("a" * 41, f"sha '{'a' * 41}' is invalid"),
        ("ABC1234", "sha 'ABC1234' is invalid"),
        ("abcdefg", "sha 'abcdefg' is invalid"),
        ("abc; touch /tmp/x", "sha 'abc; touch /tmp/x' is invalid"),
        ("abc1234\n", "sha 'abc1234\\n' is invalid"),
        (" abc1234", "sha ' abc1234' is invalid"),
        (1234567, "sha 1234567 is invalid"),
        (None, "sha is required: pass -e sha=<7-40 lowercase hex characters>"),
        ("", "sha is required: pass -e sha=<7-40 lowercase hex characters>"),
    ],
)
def test_sha_invalid(value: object, expected: str) -> None:
    message = sha_error(value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_sha_long_value_shows_length_not_value() -> None:
    value = "z" * 65
    message = sha_error(value)
    assert value not in message
    assert "65 characters" in message
    assert "'" + "z" * 64 + "'" in sha_error("z" * 64)


@given(st.text(alphabet=HEX, min_size=7, max_size=40))
def test_sha_any_lowercase_hex_passes(value: str) -> None:
    assert sha_error(value) == ""


@given(st.text())
def test_sha_any_other_text_fails(value: str) -> None:
    assume(re.fullmatch(r"[0-9a-f]{7,40}", value) is None)
    message = sha_error(value)
    assert message.startswith("sha ")
    assert "\n" not in message


# --------------------------------------------------------------------------- app_name


@pytest.mark.parametrize("value", ["melk-ai", "a", "0app", "app-1", "a" * 63])
def test_app_name_valid(value: str) -> None:
    assert app_name_error(value) == ""


@pytest.mark.parametrize(
    "value", ["my app", "my/app", "MyApp", "-app", "app_x", "a" * 64, "app\n", 5, ["a"]]
)
def test_app_name_invalid(value: object) -> None:
    message = app_name_error(value)
    assert message.startswith("app_name ")
    assert "is invalid" in message


@pytest.mark.parametrize("value", [None, ""])
def test_app_name_required(value: object) -> None:
    assert app_name_error(value).startswith("app_name is required")


# --------------------------------------------------------------------------- port


@pytest.mark.parametrize("value", [1, 8000, 65535, "8000", "1", "65535"])
def test_port_valid(value: object) -> None:
    assert port_error(value) == ""


@pytest.mark.parametrize(
    "value", [0, 70000, 65536, -1, True, False, "0", "65536", "-1", " 80", "80a", "8.0", 80.0]
)
def test_port_invalid(value: object) -> None:
    assert port_error(value).startswith(f"app_port {value!r} is invalid")


def test_port_required_and_named() -> None:
    assert port_error(None).startswith("app_port is required")
    assert port_error("", name="health_port").startswith("health_port is required")
    assert port_error("99999999999999999999").startswith("app_port '9999")


# --------------------------------------------------------------------------- health path


@pytest.mark.parametrize("value", ["/", "/health", "/api/health?full=1", "/" + "a" * 2047])
def test_health_path_valid(value: str) -> None:
    assert health_path_error(value) == ""


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("health", "must start with '/'"),
        ("/he alth", "whitespace"),
        ("/a\tb", "whitespace"),
        ("/a\x00b", "control"),
        ("/a\x7fb", "control"),
        ("/" + "a" * 2048, "at most 2048"),
        (5, "must be a string"),
        (None, "is required"),
        ("", "is required"),
    ],
)
def test_health_path_invalid(value: object, reason: str) -> None:
    message = health_path_error(value)
    assert message.startswith("health_path ")
    assert reason in message


# --------------------------------------------------------------------------- env


SECRET = "hunter2-very-secret"


@pytest.mark.parametrize(
    "value",
    [{}, {"A": "x", "B": 1, "C": 1.5, "D": True, "_E": "", "F_1": "a=b c#d 'q'"}],
)
def test_env_valid(value: dict[str, object]) -> None:
    assert env_error(value) == ""


@pytest.mark.parametrize("value", [None, [], "A=B", ["A=B"], 5])
def test_env_not_a_mapping(value: object) -> None:
    message = env_error(value)
    assert message.startswith("app_env is invalid: it must be a mapping")


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({f"DB_PASSWORD={SECRET}": "x"}, "'DB_PASSWORD=...'"),
        ({"MY KEY": "x"}, "'MY KEY'"),
        ({"1ABC": "x"}, "'1ABC'"),
        ({"": "x"}, "''"),
        ({1: "x"}, "key 1 "),
        ({"TOKEN": f"line1\n{SECRET}"}, "'TOKEN'"),
        ({"TOKEN": f"{SECRET}\r"}, "'TOKEN'"),
        ({"TOKEN": f"{SECRET}\x00"}, "'TOKEN'"),
        ({"TOKEN": None}, "'TOKEN'"),
        ({"TOKEN": [SECRET]}, "'TOKEN'"),
        ({"TOKEN": {"nested": SECRET}}, "'TOKEN'"),
    ],
)
def test_env_invalid_names_key_never_value(value: dict[object, object], named: str) -> None:
    message = env_error(value)
    assert message.startswith("app_env ")
    assert named in message
    assert SECRET not in message
    assert "hunter2" not in message
    assert "\n" not in message


def test_env_file_content() -> None:
    value = {"ZED": "last", "APP_MODE": "ok", "FLAG": True, "OFF": False, "N": 3, "X": 0.5}
    assert env_file_content(value) == ("APP_MODE=ok\nFLAG=true\nN=3\nOFF=false\nX=0.5\nZED=last\n")
    assert env_file_content({}) == ""
    assert env_file_content({"A": "a=b 'c' $HOME"}) == "A=a=b 'c' $HOME\n"


def test_env_file_content_refuses_without_leaking() -> None:
    with pytest.raises(AnsibleFilterError) as info:
        env_file_content({"GOOD": "ok", "TOKEN": f"{SECRET}\nmore"})
    assert "TOKEN" in str(info.value)
    assert SECRET not in str(info.value)


# --------------------------------------------------------------------------- image


@pytest.mark.parametrize(
    "value",
    [
        "melk-ai",
        "registry.test:5000/melk-ai",
        "registry.test/team/melk-ai",
        "localhost:5000/melk-ai",
        "team/melk_ai.web",
    ],
)
def test_image_valid(value: str) -> None:
    assert image_error(value) == ""


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("melk-ai:v1", "tag"),
        ("registry.test:5000/melk-ai:v1", "tag"),
        ("melk-ai@sha256:abc", "digest"),
        ("melk ai", "whitespace"),
        ("Melk-AI", "lowercase"),
        ("registry.test:5000/", "lowercase"),
        ("/melk-ai", "lowercase"),
        ("team//melk-ai", "lowercase"),
        ("bad_host.test:x/melk-ai", "registry host"),
        (None, "is required"),
        ("", "is required"),
        (5, "must be a string"),
    ],
)
def test_image_invalid(value: object, reason: str) -> None:
    message = image_error(value)
    assert message.startswith("app_image ")
    assert reason in message


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
        st.one_of(
            st.text(alphabet=st.characters(blacklist_characters="\n\r\x00")),
            st.integers(),
            st.booleans(),
        ),
        max_size=8,
    )
)
def test_env_file_round_trip(env: dict[str, object]) -> None:
    content = env_file_content(env)
    assert content.count("\n") == len(env)  # Docker splits env files on "\n" only
    parsed = dict(line.split("=", 1) for line in content.split("\n")[:-1])
    assert list(parsed) == sorted(env)
    for key, value in env.items():
        expected = ("true" if value else "false") if isinstance(value, bool) else str(value)
        assert parsed[key] == expected


def test_filter_module_exposes_the_checks() -> None:
    filters = FilterModule().filters()
    assert set(filters) == {
        "sha_error",
        "app_name_error",
        "port_error",
        "health_path_error",
        "env_error",
        "image_error",
        "env_file_content",
    }
    assert all(filters[name] is getattr(input_checks, name) for name in filters)


# --------------------------------------------------------------------------- exact messages
# The messages are the interface a user reads: each branch's words are pinned here.


class Other:
    pass


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "a boolean"),
        (3, "an integer"),
        (1.5, "a number"),
        ("x", "a string"),
        ({}, "a mapping"),
        ([], "a list"),
        ((), "a list"),
        (Other(), "a Other"),
        (b"x", "a list"),  # bytes is a Sequence
    ],
)
def test_type_name(value: object, name: str) -> None:
    assert input_checks.type_name(value) == name


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("x" * 64, "'" + "x" * 64 + "'"),
        ("x" * 65, "(a string of 65 characters)"),
        (10**63, str(10**63)),  # 64 characters: still shown
        (10**64, "(an integer)"),
        (None, "None"),
        ([1], "(a list)"),
    ],
)
def test_shown(value: object, text: str) -> None:
    assert input_checks.shown(value) == text


@pytest.mark.parametrize(
    ("value", "minimum", "message"),
    [
        ("x", 1, "keep 'x' is invalid: it must be a whole number"),
        (None, 1, "keep None is invalid: it must be a whole number"),
        (0, 1, "keep 0 is invalid: it must be at least 1"),
    ],
)
def test_count_option_messages(value: object, minimum: int, message: str) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        input_checks.count_option(value, "keep", minimum)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "limit", "line"),
    [
        ("a  b\nc", 10, "a b c"),
        ("a" * 10, 10, "a" * 10),
        ("a" * 11, 10, "a" * 7 + "..."),
    ],
)
def test_one_line(text: str, limit: int, line: str) -> None:
    assert input_checks.one_line(text, limit) == line


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "health_path is required: it must be a URL path starting with '/' (e.g. '/health')"),
        (5, "health_path 5 is invalid: it must be a string starting with '/'"),
        ("health", "health_path 'health' is invalid: it must start with '/' (e.g. '/health')"),
        (
            "/a b",
            "health_path '/a b' is invalid: it must not contain whitespace or control characters",
        ),
        (
            "/" + "a" * 2048,
            "health_path (a string of 2049 characters) is invalid: it must be at most 2048 "
            "characters",
        ),
    ],
)
def test_health_path_messages(value: object, message: str) -> None:
    assert health_path_error(value) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            [],
            "app_env is invalid: it must be a mapping of NAME: value pairs (use {} for none), "
            "not a list",
        ),
        (
            {"A": "x\ny"},
            "app_env value for key 'A' is invalid: it contains a line break or NUL character, "
            "which an env file cannot hold",
        ),
        (
            {"A": [None]},
            "app_env value for key 'A' is invalid: it must be a string, number or boolean, "
            "not a list",
        ),
        (
            {"PASSWORD=x=y": "1"},
            "app_env key 'PASSWORD=...' is invalid: a name must be letters, digits and '_', "
            "and must not start with a digit",
        ),
    ],
)
def test_env_messages(value: object, message: str) -> None:
    assert env_error(value) == message


@pytest.mark.parametrize(
    "value",
    [
        "a__b.c",  # a dotted first part alone is a path component, not a registry host
        "Reg.test/app",  # a registry host may have capitals, a path component may not
        "localhost/app",
        "a" * 255,
    ],
)
def test_image_valid_edges(value: str) -> None:
    assert image_error(value) == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, "app_image 5 is invalid: it must be a string (e.g. 'registry.test:5000/melk-ai')"),
        (
            "a" * 256,
            "app_image (a string of 256 characters) is invalid: it must be at most 255 characters",
        ),
        (
            "reg.test/a:b/c",
            "app_image 'reg.test/a:b/c' is invalid: its path component 'a:b' must be lowercase "
            "letters and digits, separated by '.', '_' or '-'",
        ),
        (
            "reg_x.test:5000/app",
            "app_image 'reg_x.test:5000/app' is invalid: its registry host 'reg_x.test:5000' is "
            "not a valid host[:port]",
        ),
    ],
)
def test_image_messages(value: object, message: str) -> None:
    assert image_error(value) == message
