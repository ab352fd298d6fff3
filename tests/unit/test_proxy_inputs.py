"""Unit tests for filter_plugins/proxy_inputs.py: maintenance mode's inputs and files, and
the edge proxy's limits, checked on the controller before any host is touched.

The maintenance check of the site (edge_proxy's maintenance.conf.j2) is rendered by
Ansible's templar as the role renders it: it names the maintenance file and exempts the
health path, quoted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import proxy_inputs
import pytest
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader, init_plugin_loader
from ansible.template import Templar, trust_as_template
from ansible.utils.collection_loader import AnsibleCollectionConfig
from hypothesis import given
from hypothesis import strategies as st
from proxy_inputs import (
    DEFAULT_MESSAGE,
    MAX_MESSAGE,
    FilterModule,
    health_uri,
    maintenance_body,
    maintenance_message_error,
    maintenance_on,
    maintenance_page_path,
    maintenance_path,
    maintenance_state_error,
    proxy_size_error,
    seconds_error,
)

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "roles" / "edge_proxy" / "templates" / "maintenance.conf.j2"


# --------------------------------------------------------------------------- maintenance


@pytest.mark.parametrize(
    ("value", "on"), [("on", True), ("off", False), (True, True), (False, False)]
)
def test_on_and_off_are_the_two_states(value: object, on: bool) -> None:
    assert maintenance_state_error(value) == ""
    assert maintenance_on(value) is on


@pytest.mark.parametrize("value", ["ON", "Off", "yes", "true", "1", 1, 0, "on ", ["on"], {}])
def test_anything_else_is_refused_naming_the_variable(value: object) -> None:
    assert maintenance_state_error(value).startswith("maintenance ")
    assert "on or off" in maintenance_state_error(value)
    with pytest.raises(AnsibleFilterError, match="on or off"):
        maintenance_on(value)


@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_state_says_how_to_pass_it(value: object) -> None:
    assert maintenance_state_error(value) == (
        "maintenance is required: pass -e maintenance=on or -e maintenance=off"
    )


@pytest.mark.parametrize(
    "message",
    [
        "Back at 14:00 UTC",
        "Wartung — zurück um 14 Uhr ✨",
        "line one\nline two\n\ttabbed",
        "<b>not html</b> & 'quotes' \"too\" $var ; { }",
        "family: 👩\u200d👩\u200d👧",  # zero-width joiners are text (format characters)
        "x" * MAX_MESSAGE,
    ],
)
def test_messages_of_text_are_accepted_and_written_as_they_are(message: str) -> None:
    assert maintenance_message_error(message) == ""
    assert maintenance_body(message) == message.rstrip("\n") + "\n"


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ("{{ lookup('pipe', 'id') }}", "holds a template"),
        ("{% if true %}x{% endif %}", "holds a template"),
        ("a {# comment #}", "holds a template"),
        ("bell\x07", "control characters"),
        ("nul\x00", "control characters"),
        ("carriage\rreturn", "control characters"),
        ("escape \x1b[31m red", "control characters"),
        ("lone surrogate \ud800", "control characters"),
        ("x" * (MAX_MESSAGE + 1), f"1 to {MAX_MESSAGE} characters"),
        ("   \n ", f"1 to {MAX_MESSAGE} characters"),
        (42, "invalid"),
        (["a"], "invalid"),
    ],
)
def test_messages_that_do_not_fit_the_file_are_refused(message: object, why: str) -> None:
    error = maintenance_message_error(message)
    assert error.startswith("maintenance_message ")
    assert why in error
    with pytest.raises(AnsibleFilterError):
        maintenance_body(message)


@pytest.mark.parametrize("message", [None, ""])
def test_no_message_is_the_default_sentence(message: object) -> None:
    assert maintenance_message_error(message) == ""
    assert maintenance_body(message) == DEFAULT_MESSAGE + "\n"


@given(st.text(max_size=MAX_MESSAGE))
def test_an_accepted_message_is_the_files_text_exactly(message: str) -> None:
    if maintenance_message_error(message):
        return
    body = maintenance_body(message)
    assert body.endswith("\n")
    assert body.encode("utf-8").decode("utf-8") == body
    assert (body.rstrip("\n") or DEFAULT_MESSAGE) == (message.rstrip("\n") or DEFAULT_MESSAGE)


def test_the_maintenance_file_sits_beside_the_upstream_file() -> None:
    assert maintenance_path("melk-ai") == "/etc/nginx/edge-proxy/melk-ai.maintenance"
    assert maintenance_path("shop", "/srv/proxy/") == "/srv/proxy/shop.maintenance"
    assert maintenance_page_path("shop", "/srv/proxy/") == "/srv/proxy/shop.maintenance.page"


@pytest.mark.parametrize(
    ("app_name", "state_dir"), [("../etc", "/x"), ("Melk", "/x"), ("", "/x"), ("a", "rel")]
)
def test_the_maintenance_file_refuses_names_that_are_not_one_file(
    app_name: str, state_dir: str
) -> None:
    with pytest.raises(AnsibleFilterError):
        maintenance_path(app_name, state_dir)


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("/health", "/health"),
        ("/healthz?full=1", "/healthz"),
        ("/api/v1/health", "/api/v1/health"),
        ("/he%61lth", "/health"),  # nginx's $uri is percent-decoded
        ("/status;x", "/status;x"),  # inside double quotes ';' is text
    ],
)
def test_the_health_uri_is_the_path_nginx_compares(path: str, uri: str) -> None:
    assert health_uri(path) == uri


@pytest.mark.parametrize("path", ['/a"b', "/a$b", "/a\\b", "/a%22b", "/a%24uri", "health", 5])
def test_a_health_path_that_would_break_the_quoted_string_is_refused(path: object) -> None:
    with pytest.raises(AnsibleFilterError, match="app_health_path"):
        health_uri(path)


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize("value", ["10m", "512k", "1G", "0", "1048576", 0, 1024])
def test_body_sizes_nginx_takes(value: object) -> None:
    assert proxy_size_error(value) == ""


@pytest.mark.parametrize(
    "value", ["10 m", "10mb", "-1", "1t", "", "10m; include /x", -1, True, None]
)
def test_body_sizes_that_are_not_one_nginx_size_are_refused(value: object) -> None:
    assert proxy_size_error(value).startswith("edge_proxy_client_max_body_size ")


@pytest.mark.parametrize(
    ("value", "minimum", "ok"),
    [
        (60, 1, True),
        ("60", 1, True),  # -e passes strings
        (0, 1, False),
        (0, 0, True),
        (604800, 1, True),
        (604801, 1, False),
        ("1m", 1, False),
        (True, 0, False),
        (-5, 0, False),
    ],
)
def test_seconds(value: object, minimum: int, ok: bool) -> None:
    error = seconds_error(value, "edge_proxy_read_timeout", minimum)
    assert (error == "") is ok
    if not ok:
        assert error.startswith("edge_proxy_read_timeout ")


def test_every_function_is_a_filter() -> None:
    filters = FilterModule().filters()
    assert filters["maintenance_path"] is proxy_inputs.maintenance_path
    assert set(filters) == {
        "maintenance_state_error",
        "maintenance_on",
        "maintenance_message_error",
        "maintenance_body",
        "maintenance_path",
        "maintenance_page_path",
        "health_uri",
        "proxy_size_error",
        "seconds_error",
    }


# --------------------------------------------------------------------------- the site's check


@pytest.fixture(scope="module")
def render() -> Any:
    """maintenance.conf.j2 rendered as the role renders it (lookup('template'))."""
    if AnsibleCollectionConfig.collection_finder is None:  # once per process
        init_plugin_loader()
    filter_loader.add_directory(str(ROOT / "filter_plugins"))

    def rendered(health_path: str, app_name: str = "melk-ai") -> str:
        variables = {
            "edge_proxy_app_name": app_name,
            "edge_proxy_state_dir": "/etc/nginx/edge-proxy",
            "edge_proxy_health_path": health_path,
            "edge_proxy_maintenance_retry_after": 60,
            "ansible_managed": "managed",
        }
        templar = Templar(loader=DataLoader(), variables=variables)
        text = templar.template(
            trust_as_template(f"{{{{ lookup('ansible.builtin.template', '{SNIPPET}') }}}}")
        )
        assert isinstance(text, str)
        return text

    return rendered


def test_the_check_tests_the_apps_file_and_exempts_the_health_path(render: Any) -> None:
    text = render("/healthz?deep=1", "shop")
    lines = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert "if (-f /etc/nginx/edge-proxy/shop.maintenance) {" in lines
    assert 'if ($uri = "/healthz") {' in lines
    # The page (never removed) first; the flag holds the text on hosts turned on before.
    assert "root /etc/nginx/edge-proxy;" in lines
    assert "try_files /shop.maintenance.page /shop.maintenance =503;" in lines
    assert "add_header Retry-After 60 always;" in lines
    # The private code reaches the page only through its own error_page.
    assert "return 599;" in lines
    assert "error_page 599 =503 /.edge-proxy-maintenance;" in lines


def test_the_check_refuses_a_health_path_it_cannot_quote(render: Any) -> None:
    with pytest.raises(Exception, match="app_health_path"):
        render('/a"b')
