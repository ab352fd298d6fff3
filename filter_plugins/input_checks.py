"""Ansible filters that check deploy inputs, and the value helpers the other filters share.

Validators (``*_error``) return ``''`` when the value is valid and otherwise a one-line message
that names the variable.  Messages never contain anything from ``app_env`` except key names,
and for a key such as ``PASSWORD=...`` only the part before the ``=``.  ``env_file_content``
turns a checked ``app_env`` into the Docker env file.

Every public function here is a plain, pure function (no I/O, inputs never mutated); the
filters are exposed by ``FilterModule`` under their own names.  Ansible loads each file of
filter_plugins/ by path, so release_history.py and edge_upstream.py put this directory on
sys.path and import this file by its bare name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

MAX_SHOWN = 64
MAX_APP_NAME = 63
MAX_HEALTH_PATH = 2048
MAX_IMAGE = 255

SHA_RULE = "it must be 7 to 40 lowercase hex characters (0-9, a-f)"
APP_NAME_RULE = (
    f"it must be 1 to {MAX_APP_NAME} characters of lowercase letters, digits and '-', "
    "starting with a letter or digit"
)
PORT_RULE = "it must be a whole number from 1 to 65535"
ENV_KEY_RULE = "a name must be letters, digits and '_', and must not start with a digit"
NO_SPACE_RULE = "it must not contain whitespace or control characters"
IMAGE_EXAMPLE = "e.g. 'registry.test:5000/melk-ai'"

SHA_RE = re.compile(r"[0-9a-f]{7,40}")
_APP_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
_DIGITS_RE = re.compile(r"[0-9]{1,10}")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IMAGE_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_IMAGE_DOMAIN_RE = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")

# --------------------------------------------------------------------------- helpers


def type_name(value: object) -> str:
    """A friendly type name (Ansible passes tagged subclasses of the builtins)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence):
        return "a list"
    return f"a {type(value).__name__}"


def shown(value: object) -> str:
    """The value's repr when it is short, otherwise only its length or type."""
    if isinstance(value, str):
        text = str(value)
        if len(text) <= MAX_SHOWN:
            return repr(text)
        return f"(a string of {len(text)} characters)"
    if value is None or isinstance(value, (bool, int, float)):
        text = repr(value)
        if len(text) <= MAX_SHOWN:
            return text
    return f"({type_name(value)})"


def missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _has_space_or_control(text: str) -> bool:
    return any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in text)


def as_int(value: object) -> int | None:
    """An int (not a bool), or a string of at most 10 ASCII digits as -e passes it; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str) and _DIGITS_RE.fullmatch(value):
        return int(value)
    return None


def count_option(value: object, name: str, minimum: int) -> int:
    """An int option (a string of digits is accepted, as ``-e`` passes strings)."""
    number = as_int(value)
    if number is None:
        raise AnsibleFilterError(f"{name} {shown(value)} is invalid: it must be a whole number")
    if number < minimum:
        raise AnsibleFilterError(f"{name} {number} is invalid: it must be at least {minimum}")
    return number


def one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# --------------------------------------------------------------------------- validators


def sha_error(value: object, name: str = "sha") -> str:
    """'' if value is a 7-40 character lowercase hex commit sha, else why not."""
    if missing(value):
        return f"{name} is required: pass -e {name}=<7-40 lowercase hex characters>"
    if isinstance(value, str):
        if SHA_RE.fullmatch(value):
            return ""
        return f"{name} {shown(value)} is invalid: {SHA_RULE}"
    return f"{name} {shown(value)} is invalid: {SHA_RULE}, given as a string (quote it)"


def app_name_error(value: object, name: str = "app_name") -> str:
    """'' if value is a DNS-label-like app name (at most 63 characters), else why not."""
    if missing(value):
        return f"{name} is required: {APP_NAME_RULE}"
    if isinstance(value, str) and len(value) <= MAX_APP_NAME and _APP_NAME_RE.fullmatch(value):
        return ""
    return f"{name} {shown(value)} is invalid: {APP_NAME_RULE}"


def port_error(value: object, name: str = "app_port") -> str:
    """'' if value is a TCP port 1..65535 (int, or a string of digits), else why not."""
    if missing(value):
        return f"{name} is required: {PORT_RULE}"
    number = as_int(value)
    if number is not None and 1 <= number <= 65535:
        return ""
    return f"{name} {shown(value)} is invalid: {PORT_RULE}"


def health_path_error(value: object, name: str = "health_path") -> str:
    """'' if value is an absolute URL path without whitespace or control characters."""
    example = "e.g. '/health'"
    if missing(value):
        return f"{name} is required: it must be a URL path starting with '/' ({example})"
    if not isinstance(value, str):
        return f"{name} {shown(value)} is invalid: it must be a string starting with '/'"
    if not value.startswith("/"):
        return f"{name} {shown(value)} is invalid: it must start with '/' ({example})"
    if _has_space_or_control(value):
        return f"{name} {shown(value)} is invalid: {NO_SPACE_RULE}"
    if len(value) > MAX_HEALTH_PATH:
        return f"{name} {shown(value)} is invalid: it must be at most {MAX_HEALTH_PATH} characters"
    return ""


def _env_key_shown(key: object) -> str:
    """A key for a message: never anything after an '=' (that could be a value)."""
    if isinstance(key, str) and "=" in key:
        return shown(key.partition("=")[0] + "=...")
    return shown(key)


def env_error(value: object, name: str = "app_env") -> str:
    """'' if value is a mapping NAME -> scalar that fits a Docker env file, else why not.

    Keys must match ``[A-Za-z_][A-Za-z0-9_]*``.  Values must be strings, numbers or
    booleans without newlines or NUL.  The message names the offending key, never a value.
    """
    if not isinstance(value, Mapping):
        return (
            f"{name} is invalid: it must be a mapping of NAME: value pairs "
            f"(use {{}} for none), not {type_name(value)}"
        )
    for key, item in value.items():
        if not isinstance(key, str) or not _ENV_KEY_RE.fullmatch(key):
            return f"{name} key {_env_key_shown(key)} is invalid: {ENV_KEY_RULE}"
        if isinstance(item, str):
            if "\n" in item or "\r" in item or "\x00" in item:
                return (
                    f"{name} value for key {shown(key)} is invalid: it contains a line break "
                    "or NUL character, which an env file cannot hold"
                )
        elif not isinstance(item, (int, float)):  # bool is an int
            return (
                f"{name} value for key {shown(key)} is invalid: it must be a string, number or "
                f"boolean, not {type_name(item)}"
            )
    return ""


def _image_grammar_error(value: str) -> str:
    parts = value.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        if not _IMAGE_DOMAIN_RE.fullmatch(first):
            return f"its registry host {first!r} is not a valid host[:port]"
        parts = parts[1:]
    for part in parts:
        if not _IMAGE_COMPONENT_RE.fullmatch(part):
            return (
                f"its path component {part!r} must be lowercase letters and digits, "
                "separated by '.', '_' or '-'"
            )
    return ""


def image_error(value: object, name: str = "app_image") -> str:
    """'' if value is an image repository without tag or digest, else why not.

    A registry ``host:port/`` prefix is fine ('registry.test:5000/melk-ai'); a tag is not
    ('melk-ai:v1'): the tag is always the release sha.
    """
    if missing(value):
        return f"{name} is required: give the image repository without a tag ({IMAGE_EXAMPLE})"
    if not isinstance(value, str):
        return f"{name} {shown(value)} is invalid: it must be a string ({IMAGE_EXAMPLE})"
    text = shown(value)
    if _has_space_or_control(value):
        return f"{name} {text} is invalid: {NO_SPACE_RULE}"
    if "@" in value:
        return (
            f"{name} {text} is invalid: it must not include a digest ('@...'); "
            f"give the repository only ({IMAGE_EXAMPLE})"
        )
    if ":" in value.rpartition("/")[2]:
        return (
            f"{name} {text} is invalid: it must not include a tag; give the repository only "
            f"({IMAGE_EXAMPLE}), the tag is the release sha"
        )
    if len(value) > MAX_IMAGE:
        return f"{name} {text} is invalid: it must be at most {MAX_IMAGE} characters"
    grammar = _image_grammar_error(value)
    if grammar:
        return f"{name} {text} is invalid: {grammar}"
    return ""


# --------------------------------------------------------------------------- env file


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return str(float(value))
    return str(value)


def env_file_content(app_env: Mapping[str, object]) -> str:
    """app_env as a Docker env file: ``KEY=value`` lines sorted by key, '' when empty.

    Values are written verbatim: ``docker run --env-file`` takes everything after the first
    ``=`` literally (no quoting, no ``$`` expansion).  Booleans become ``true``/``false``.
    Raises AnsibleFilterError (naming keys, never values) when env_error finds a problem.
    """
    error = env_error(app_env)
    if error:
        raise AnsibleFilterError(error)
    return "".join(f"{key}={_env_value(app_env[key])}\n" for key in sorted(app_env))


# --------------------------------------------------------------------------- plugin


class FilterModule:
    """Ansible filter plugin: the input checks and the env file, each under its own name."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        functions: tuple[Callable[..., Any], ...] = (
            sha_error,
            app_name_error,
            port_error,
            health_path_error,
            env_error,
            image_error,
            env_file_content,
        )
        return {function.__name__: function for function in functions}
