"""The edge proxy's own inputs: maintenance mode (playbooks/maintenance.yml) and its limits.

Maintenance mode is a file per app, ``<state dir>/<app_name>.maintenance``: while it
exists, the app's site answers every request but the health path with 503, a Retry-After
header and the page's text as the body. nginx tests for the file on every request, so
turning maintenance on or off writes or removes a file and never reloads nginx (a reload
closes every idle keep-alive connection). edge_proxy writes it; status reads it. The text
nginx answers is read from the page file, ``<state dir>/<app_name>.maintenance.page``,
written before the flag and never removed: a request that found the flag a moment before
it was removed still finds the page (it found a 404 when the flag was the page).

Validators (``*_error``) are pure and return ``''`` for a good value, else why it is
refused, naming the variable. A value that holds a Jinja template is refused: what reaches
them literally (an inventory's ``!unsafe``, what the CD job passes) is never templated.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ansible.errors import AnsibleFilterError

# Ansible loads filter_plugins/*.py by path: the shared checks by their bare name.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)

from edge_upstream import UPSTREAM_DIR, UPSTREAM_SUFFIX, upstream_path  # noqa: E402
from input_checks import as_int, shown  # noqa: E402

MAINTENANCE_SUFFIX = ".maintenance"
PAGE_SUFFIX = ".page"
MAX_MESSAGE = 2000
DEFAULT_MESSAGE = "This service is down for maintenance. Please try again later."
STATES = {"on": True, "off": False}
STATE_RULE = "it must be on or off"
MESSAGE_RULE = (
    f"it must be text of 1 to {MAX_MESSAGE} characters, without control characters "
    "other than newlines and tabs"
)
SIZE_RULE = "it must be a number of bytes, optionally with k, m or g (e.g. 10m); 0 for no limit"
MAX_SECONDS = 7 * 86400

_TEMPLATE_MARKS = ("{{", "{%", "{#")
_SIZE_RE = re.compile(r"[0-9]{1,9}[kKmMgG]?")
# Characters that would end or change an nginx double-quoted string.
_NGINX_QUOTED_UNSAFE = ('"', "\\", "$")


def maintenance_state_error(value: object, name: str = "maintenance") -> str:
    """'' if value is on or off (YAML's unquoted on/off, booleans, count as the same)."""
    if isinstance(value, bool) or (isinstance(value, str) and value in STATES):
        return ""
    if value is None or value == "":
        return f"{name} is required: pass -e {name}=on or -e {name}=off"
    return f"{name} {shown(value)} is invalid: {STATE_RULE}"


def maintenance_on(value: object) -> bool:
    """True for on, False for off; AnsibleFilterError for anything else."""
    error = maintenance_state_error(value)
    if error:
        raise AnsibleFilterError(error)
    return value if isinstance(value, bool) else STATES[str(value)]


def _control(character: str) -> bool:
    """A control character (or a lone surrogate, which UTF-8 cannot write) other than
    newline and tab; format characters such as an emoji's zero-width joiner are text."""
    return character not in "\n\t" and unicodedata.category(character) in {"Cc", "Cs"}


def maintenance_message_error(value: object, name: str = "maintenance_message") -> str:
    """'' if value is empty (the default message) or text that fits the message file."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        return f"{name} {shown(value)} is invalid: {MESSAGE_RULE}"
    if any(mark in value for mark in _TEMPLATE_MARKS):
        return f"{name} {shown(value)} is refused: it holds a template, and nothing is templated"
    if len(value) > MAX_MESSAGE or not value.strip() or any(_control(c) for c in value):
        return f"{name} {shown(value)} is invalid: {MESSAGE_RULE}"
    return ""


def maintenance_body(message: object) -> str:
    """The message file's text: the message (or the default one) and a final newline."""
    error = maintenance_message_error(message)
    if error:
        raise AnsibleFilterError(error)
    text = str(message) if message else DEFAULT_MESSAGE
    return text.rstrip("\n") + "\n"


def maintenance_path(app_name: object, state_dir: object = UPSTREAM_DIR) -> str:
    """The app's maintenance file: ``<state_dir>/<app_name>.maintenance``, beside its
    switch file (the same checks of app_name and state_dir: upstream_path)."""
    return upstream_path(app_name, state_dir).removesuffix(UPSTREAM_SUFFIX) + MAINTENANCE_SUFFIX


def maintenance_page_path(app_name: object, state_dir: object = UPSTREAM_DIR) -> str:
    """The app's maintenance page, ``<state_dir>/<app_name>.maintenance.page``: the text
    nginx answers while the maintenance file exists. Written before that file, never
    removed, so it outlives every switch-off."""
    return maintenance_path(app_name, state_dir) + PAGE_SUFFIX


def health_uri(path: object) -> str:
    """The health path as nginx's $uri sees it (no query, percent-decoded), for a quoted
    string of the site: AnsibleFilterError when it cannot be written there safely."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise AnsibleFilterError(
            f"app_health_path {shown(path)} is invalid: it must start with '/'"
        )
    uri = unquote(path.split("?", 1)[0])
    if any(mark in uri for mark in _NGINX_QUOTED_UNSAFE) or any(_control(c) for c in uri):
        raise AnsibleFilterError(
            f"app_health_path {shown(path)} cannot be exempted from maintenance mode: "
            "its path must not contain '\"', '\\', '$' or control characters"
        )
    return uri


def proxy_size_error(value: object, name: str = "edge_proxy_client_max_body_size") -> str:
    """'' if value is an nginx size: digits, optionally k, m or g."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return ""
    if isinstance(value, str) and _SIZE_RE.fullmatch(value):
        return ""
    return f"{name} {shown(value)} is invalid: {SIZE_RULE}"


def seconds_error(value: object, name: str, minimum: int = 1) -> str:
    """'' if value is a whole number of seconds, at least minimum."""
    number = as_int(value)
    if number is not None and minimum <= number <= MAX_SECONDS:
        return ""
    rule = f"it must be a whole number of seconds from {minimum} to {MAX_SECONDS}"
    return f"{name} {shown(value)} is invalid: {rule}"


class FilterModule:
    """The checks and helpers above, as Jinja filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        functions: tuple[Callable[..., Any], ...] = (
            maintenance_state_error,
            maintenance_on,
            maintenance_message_error,
            maintenance_body,
            maintenance_path,
            maintenance_page_path,
            health_uri,
            proxy_size_error,
            seconds_error,
        )
        return {function.__name__: function for function in functions}
