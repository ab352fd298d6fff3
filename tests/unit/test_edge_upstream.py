"""Unit tests for filter_plugins/edge_upstream.py: the edge proxy's upstream file contract.

The writer (upstream_text, through edge_proxy's real upstream.j2 rendered by Ansible's
templar) and the parser (serving_release) must agree for every port and release.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import edge_upstream
import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader, init_plugin_loader
from ansible.template import Templar, trust_as_template
from edge_upstream import FilterModule, serving_release, upstream_path, upstream_text
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "roles" / "edge_proxy" / "templates" / "upstream.j2"
SLOT_PORTS = {"blue": 18001, "green": 18002}
SHA_A = "a" * 40
SHA_B = "b" * 40


@pytest.fixture(scope="module")
def render() -> Any:
    """upstream.j2 rendered the way switch.yml does: lookup('template') in Ansible's templar."""
    init_plugin_loader()
    filter_loader.add_directory(str(ROOT / "filter_plugins"))

    def rendered(port: object, release: str, host: str = "127.0.0.1") -> str:
        variables = {
            "edge_proxy_upstream_port": port,
            "edge_proxy_release": release,
            "edge_proxy_upstream_host": host,
        }
        templar = Templar(loader=DataLoader(), variables=variables)
        text = templar.template(
            trust_as_template(f"{{{{ lookup('ansible.builtin.template', '{TEMPLATE}') }}}}")
        )
        assert isinstance(text, str)
        return text

    return rendered


# --------------------------------------------------------------------------- template <-> parser


@pytest.mark.parametrize(
    ("port", "release", "expected"),
    [
        (18001, "abcdef1", {"sha": "abcdef1", "slot": "blue", "port": 18001}),
        (18002, SHA_B, {"sha": SHA_B, "slot": "green", "port": 18002}),
        ("18002", SHA_A, {"sha": SHA_A, "slot": "green", "port": 18002}),  # -e passes strings
        (18001, "", {"sha": None, "slot": "blue", "port": 18001}),  # written without a sha
        (65535, "0123456789abcdef0123456789abcdef01234567", None),  # not a slot's port
        (1, "1234567", None),
        (0, "", None),  # no release yet: the placeholder
        ("0", "", None),
    ],
)
def test_the_rendered_template_reads_back_as_what_it_was_given(
    render: Any, port: object, release: str, expected: dict[str, Any] | None
) -> None:
    text = render(port, release)
    assert text.startswith("# Ansible managed\n")
    assert text.endswith(";\n")
    assert text == "# Ansible managed\n" + upstream_text(port, release)
    served = serving_release(text, SLOT_PORTS)
    if expected is None and str(port) != "0":
        expected = {"sha": release, "slot": None, "port": int(str(port))}
    assert served == expected


def test_the_placeholder_is_the_down_server(render: Any) -> None:
    assert (
        render(0, "") == "# Ansible managed\n# no release deployed yet\nserver 127.0.0.1:9 down;\n"
    )


def test_the_template_refuses_a_release_that_is_not_a_sha(render: Any) -> None:
    with pytest.raises(AnsibleFilterError, match="release 'v1' is invalid"):
        render(18001, "v1")


# --------------------------------------------------------------------------- writer


@pytest.mark.parametrize(
    ("port", "release", "host", "text"),
    [
        (18001, "abcdef1", "127.0.0.1", "# release abcdef1\nserver 127.0.0.1:18001 max_fails=0;\n"),
        (18002, None, "127.0.0.1", "server 127.0.0.1:18002 max_fails=0;\n"),
        (18002, "", "app.internal", "server app.internal:18002 max_fails=0;\n"),
        (80, "1234567", "[::1]", "# release 1234567\nserver [::1]:80 max_fails=0;\n"),
        ("65535", "", "h", "server h:65535 max_fails=0;\n"),
        (0, SHA_A, "127.0.0.1", "# no release deployed yet\nserver 127.0.0.1:9 down;\n"),
        ("0", "", "anything but checked", edge_upstream.NO_RELEASE),
    ],
)
def test_upstream_text(port: object, release: object, host: object, text: str) -> None:
    assert upstream_text(port, release, host) == text


@pytest.mark.parametrize(
    ("port", "release", "host", "message"),
    [
        (-1, "", "127.0.0.1", "upstream port -1 is invalid: it must be a whole number from 0"),
        (65536, "", "127.0.0.1", "upstream port 65536 is invalid"),
        ("80 ", "", "127.0.0.1", "upstream port '80 ' is invalid"),
        (True, "", "127.0.0.1", "upstream port True is invalid"),
        (None, "", "127.0.0.1", "upstream port None is invalid"),
        (80, "ABCDEF1", "127.0.0.1", "release 'ABCDEF1' is invalid"),
        (80, "abc123", "127.0.0.1", "release 'abc123' is invalid"),
        (80, 1234567, "127.0.0.1", "release 1234567 is invalid"),
        (80, "", "", "upstream host '' is invalid"),
        (80, "", "a b", "upstream host 'a b' is invalid"),
        (80, "", "h;x", "upstream host 'h;x' is invalid"),
        (80, "", None, "upstream host None is invalid"),
    ],
)
def test_upstream_text_refuses(port: object, release: object, host: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        upstream_text(port, release, host)
    assert str(caught.value).startswith(message)


@given(
    st.integers(min_value=1, max_value=65535),
    st.one_of(st.just(""), st.from_regex(r"[0-9a-f]{7,40}", fullmatch=True)),
)
def test_whatever_is_written_is_read_back(port: int, release: str) -> None:
    served = serving_release("# Ansible managed\n" + upstream_text(port, release), SLOT_PORTS)
    slot = {18001: "blue", 18002: "green"}.get(port)
    assert served == {"sha": release or None, "slot": slot, "port": port}


# --------------------------------------------------------------------------- parser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "#release  abcdef1 \n server x:18002;",
            {"sha": "abcdef1", "slot": "green", "port": 18002},
        ),
        (
            "server x:18001 max_fails=0;\n# release abcdef1\n",
            {"sha": "abcdef1", "slot": "blue", "port": 18001},
        ),
        ("# release abcdef\nserver x:18001;", {"sha": None, "slot": "blue", "port": 18001}),
        ("# release ABCDEF1\nserver x:18001;", {"sha": None, "slot": "blue", "port": 18001}),
        ("# released abcdef1\nserver x:18001;", {"sha": None, "slot": "blue", "port": 18001}),
        ("x # release abcdef1\nserver x:18001;", {"sha": None, "slot": "blue", "port": 18001}),
        ("# release abcdef1 x\nserver x:18001;", {"sha": None, "slot": "blue", "port": 18001}),
        ("server x:180010;", None),
        ("server x:18001", None),
        ("server x:18001 down;", None),
        ("server x:18001 max_fails=0 down;", None),
        (
            "server x:18001 max_fails=0;\n# server y:9 down;",
            {"sha": None, "slot": "blue", "port": 18001},
        ),
        ("server x:18001 slowdown=1;", {"sha": None, "slot": "blue", "port": 18001}),
        ("# no release deployed yet\nserver 127.0.0.1:9 down;\n", None),
        ("", None),
        (None, None),
        (b"server x:18001;", None),
        ("garbage", None),
    ],
)
def test_serving_release(text: object, expected: dict[str, object] | None) -> None:
    assert serving_release(text, SLOT_PORTS) == expected


def test_serving_release_reads_slot_ports_given_as_strings() -> None:
    served = serving_release("server x:18002;", {"blue": "18001", "green": "18002"})
    assert served == {"sha": None, "slot": "green", "port": 18002}


# --------------------------------------------------------------------------- path


@pytest.mark.parametrize(
    ("app", "state_dir", "path"),
    [
        ("melk-ai", edge_upstream.UPSTREAM_DIR, "/etc/nginx/edge-proxy/melk-ai.upstream"),
        ("shop", "/srv/proxy/", "/srv/proxy/shop.upstream"),
        ("a1", "/", "/a1.upstream"),
    ],
)
def test_upstream_path(app: str, state_dir: str, path: str) -> None:
    assert upstream_path(app, state_dir) == path


def test_upstream_path_defaults_to_the_edge_proxy_state_dir() -> None:
    defaults = yaml.safe_load((ROOT / "roles/edge_proxy/defaults/main.yml").read_text())
    assert defaults["edge_proxy_state_dir"] == edge_upstream.UPSTREAM_DIR
    assert upstream_path("melk-ai") == "/etc/nginx/edge-proxy/melk-ai.upstream"


@pytest.mark.parametrize(
    ("app", "state_dir", "message"),
    [
        ("Melk", "/x", "app_name 'Melk' is invalid"),
        ("", "/x", "app_name is required"),
        ("../etc", "/x", "app_name '../etc' is invalid"),
        ("app", "relative", "state_dir 'relative' is invalid: it must be an absolute path"),
        ("app", None, "state_dir None is invalid"),
    ],
)
def test_upstream_path_refuses(app: str, state_dir: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        upstream_path(app, state_dir)
    assert str(caught.value).startswith(message)


def test_filter_module_exposes_the_contract() -> None:
    filters = FilterModule().filters()
    assert set(filters) == {"upstream_path", "upstream_text", "serving_release"}
    assert all(filters[name] is getattr(edge_upstream, name) for name in filters)


def test_upstream_text_writes_no_release_line_by_default() -> None:
    assert upstream_text(18001) == "server 127.0.0.1:18001 max_fails=0;\n"


def test_upstream_text_port_message() -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        upstream_text("x")
    assert str(caught.value) == (
        "upstream port 'x' is invalid: it must be a whole number from 0 (no release yet) to 65535"
    )


def test_upstream_path_strips_only_trailing_slashes() -> None:
    assert upstream_path("app", "/srv/proxyX//") == "/srv/proxyX/app.upstream"
