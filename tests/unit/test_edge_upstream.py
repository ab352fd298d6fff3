"""Unit tests for filter_plugins/edge_upstream.py: the edge's switch file contract.

The writer (upstream_text, through edge_proxy's real upstream.j2 rendered by Ansible's
templar) and the parser (serving_release) must agree for every address, slot and release;
where nft is installed, what the writer writes is also checked by nft itself (nft -c).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import edge_upstream
import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader, init_plugin_loader
from ansible.template import Templar, trust_as_template
from edge_upstream import FilterModule, address, serving_release, upstream_path, upstream_text
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "roles" / "edge_proxy" / "templates" / "upstream.j2"
SLOT_PORTS = {"blue": 18001, "green": 18002}
SHA_A = "a" * 40
SHA_B = "b" * 40
MANAGED = "# Ansible managed\n"
APP_RULE = (
    "it must be 1 to 63 characters of lowercase letters, digits and '-', "
    "starting with a letter or digit"
)
SHA_RULE = "it must be 7 to 40 lowercase hex characters (0-9, a-f)"
ADDRESS_RULE = "is invalid: give an IPv4 address and a port, like 172.17.0.1:18000"
SLOT_RULE = "is invalid: give a slot name like blue"


def head(app: str) -> str:
    """The lines every switch file has: the table, the app's chain, emptied."""
    return (
        "add table ip edge_proxy\n"
        f"add chain ip edge_proxy app-{app} "
        "{ type nat hook output priority -110; policy accept; }\n"
        f"flush chain ip edge_proxy app-{app}\n"
    )


def rule(app: str, front: str, front_port: int, target: str, target_port: int) -> str:
    return (
        f"add rule ip edge_proxy app-{app} ip daddr {front} tcp dport {front_port}"
        f" dnat to {target}:{target_port}\n"
    )


PLACEHOLDER = "# no release deployed yet\n" + head("melk-ai")


@pytest.fixture(scope="module")
def render() -> Any:
    """upstream.j2 rendered the way switch.yml does: lookup('template') in Ansible's templar."""
    init_plugin_loader()
    filter_loader.add_directory(str(ROOT / "filter_plugins"))

    def rendered(
        container: str = "melk-ai-blue",
        ip: object = "172.17.0.3",
        port: object = 8000,
        release: object = "",
        slot: object = "",
        app: object = "melk-ai",
        front_host: object = "172.17.0.1",
        front_port: object = 18000,
        front_ports: object = 1,
    ) -> str:
        variables = {
            "edge_proxy_app_name": app,
            "__edge_proxy_front_host": front_host,
            "edge_proxy_port_block": [front_port, front_ports],
            "edge_proxy_target_container": container,
            "edge_proxy_target_ip": ip,
            "edge_proxy_target_port": port,
            "edge_proxy_release": release,
            "edge_proxy_target_slot": slot,
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
    ("given_", "text", "served"),
    [
        (
            {"release": "abcdef1", "slot": "blue"},
            "# release abcdef1\n# slot blue\n"
            + head("melk-ai")
            + rule("melk-ai", "172.17.0.1", 18000, "172.17.0.3", 8000),
            {"sha": "abcdef1", "slot": "blue", "port": 18001},
        ),
        (
            {"release": SHA_B, "slot": "green", "ip": "10.0.0.9", "port": 80},
            f"# release {SHA_B}\n# slot green\n"
            + head("melk-ai")
            + rule("melk-ai", "172.17.0.1", 18000, "10.0.0.9", 80),
            {"sha": SHA_B, "slot": "green", "port": 18002},
        ),
        (  # -e passes strings
            {"release": SHA_A, "slot": "green", "port": "8000", "front_port": "18007"},
            f"# release {SHA_A}\n# slot green\n"
            + head("melk-ai")
            + rule("melk-ai", "172.17.0.1", 18007, "172.17.0.3", 8000),
            {"sha": SHA_A, "slot": "green", "port": 18002},
        ),
        (  # written without a sha
            {"slot": "blue", "app": "shop", "front_host": "192.168.1.1", "front_port": 1},
            "# slot blue\n" + head("shop") + rule("shop", "192.168.1.1", 1, "172.17.0.3", 8000),
            {"sha": None, "slot": "blue", "port": 18001},
        ),
        (  # written without a slot: which slot serves is unknown
            {"release": "1234567", "port": 65535},
            "# release 1234567\n"
            + head("melk-ai")
            + rule("melk-ai", "172.17.0.1", 18000, "172.17.0.3", 65535),
            {"sha": "1234567", "slot": None, "port": None},
        ),
        (  # a slot the deploy does not know
            {"release": "1234567", "slot": "red"},
            "# release 1234567\n# slot red\n"
            + head("melk-ai")
            + rule("melk-ai", "172.17.0.1", 18000, "172.17.0.3", 8000),
            {"sha": "1234567", "slot": None, "port": None},
        ),
        ({"container": ""}, PLACEHOLDER, None),  # no release yet
        (  # no container: the placeholder, whatever else is set
            {"container": "", "ip": "", "release": SHA_A, "slot": "blue"},
            PLACEHOLDER,
            None,
        ),
    ],
)
def test_the_rendered_template_reads_back_as_what_it_was_given(
    render: Any, given_: dict[str, Any], text: str, served: dict[str, Any] | None
) -> None:
    rendered = render(**given_)
    assert rendered == MANAGED + text
    assert serving_release(rendered, SLOT_PORTS) == served


@pytest.mark.parametrize(
    ("given_", "message"),
    [
        ({"release": "v1"}, f"release 'v1' is invalid: {SHA_RULE}"),
        ({"slot": "Blue"}, f"slot 'Blue' {SLOT_RULE}"),
        ({"ip": ""}, f"target address ':8000' {ADDRESS_RULE}"),  # not on the bridge network
        ({"port": 0}, f"target address '172.17.0.3:0' {ADDRESS_RULE}"),
        ({"front_host": ""}, f"front address ':18000' {ADDRESS_RULE}"),
        ({"front_port": 65536}, f"front address '172.17.0.1:65536' {ADDRESS_RULE}"),
        ({"app": "Melk"}, f"app_name 'Melk' is invalid: {APP_RULE}"),
    ],
)
def test_the_template_refuses_what_the_file_cannot_say(
    render: Any, given_: dict[str, Any], message: str
) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        render(**given_)
    assert message in str(caught.value)


SLOTS = st.sampled_from(["", "blue", "green", "red", "abcdefghijklmnop"])
SHAS = st.one_of(st.just(""), st.from_regex(r"[0-9a-f]{7,40}", fullmatch=True))
APPS = st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True)


@given(
    APPS,
    st.ip_addresses(v=4).map(str),
    st.integers(min_value=1, max_value=65535),
    st.ip_addresses(v=4).map(str),
    st.integers(min_value=1, max_value=65535),
    SHAS,
    SLOTS,
)
def test_whatever_is_written_is_read_back(
    render: Any,
    app: str,
    front: str,
    front_port: int,
    ip: str,
    port: int,
    release: str,
    slot: str,
) -> None:
    text = render(
        app=app,
        front_host=front,
        front_port=front_port,
        ip=ip,
        port=port,
        release=release,
        slot=slot,
    )
    marks = (f"# release {release}\n" if release else "") + (f"# slot {slot}\n" if slot else "")
    assert text == MANAGED + marks + head(app) + rule(app, front, front_port, ip, port)
    served = serving_release(text, SLOT_PORTS)
    known = slot if slot in SLOT_PORTS else None
    assert served == {
        "sha": release or None,
        "slot": known,
        "port": SLOT_PORTS[known] if known else None,
    }


# --------------------------------------------------------------------------- writer


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (
            ("melk-ai", "172.17.0.1:18000", "172.17.0.3:8000", "abcdef1", "blue"),
            "# release abcdef1\n# slot blue\n"
            + head("melk-ai")
            + rule("melk-ai", "172.17.0.1", 18000, "172.17.0.3", 8000),
        ),
        (
            ("a", "127.0.0.1:1", "10.1.2.3:65535"),
            head("a") + rule("a", "127.0.0.1", 1, "10.1.2.3", 65535),
        ),
        (
            ("shop", "172.17.0.1:18000", "172.17.0.3:8000", None, "green"),
            "# slot green\n" + head("shop") + rule("shop", "172.17.0.1", 18000, "172.17.0.3", 8000),
        ),
        (  # a port with a leading zero is the same port
            ("shop", "172.17.0.1:018000", "172.17.0.3:08000", SHA_A),
            f"# release {SHA_A}\n"
            + head("shop")
            + rule("shop", "172.17.0.1", 18000, "172.17.0.3", 8000),
        ),
        (("melk-ai", "172.17.0.1:18000"), PLACEHOLDER),
        (("melk-ai", "172.17.0.1:18000", "", SHA_A, "blue"), PLACEHOLDER),
        (("melk-ai", "172.17.0.1:18000", None, "not checked", "Not Checked"), PLACEHOLDER),
    ],
)
def test_upstream_text(args: tuple[object, ...], text: str) -> None:
    assert upstream_text(*args) == text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Melk", "172.17.0.1:1"), f"app_name 'Melk' is invalid: {APP_RULE}"),
        (("", "172.17.0.1:1"), f"app_name is required: {APP_RULE}"),
        (("../etc", "172.17.0.1:1"), f"app_name '../etc' is invalid: {APP_RULE}"),
        (("a b", "172.17.0.1:1"), f"app_name 'a b' is invalid: {APP_RULE}"),
        (("a" * 64, "172.17.0.1:1"), f"app_name {'a' * 64!r} is invalid: {APP_RULE}"),
        (("app", "localhost:80"), f"front address 'localhost:80' {ADDRESS_RULE}"),
        (("app", "[::1]:80"), f"front address '[::1]:80' {ADDRESS_RULE}"),
        (("app", "::1:80"), f"front address '::1:80' {ADDRESS_RULE}"),
        (("app", "172.17.0.1"), f"front address '172.17.0.1' {ADDRESS_RULE}"),
        (("app", "172.17.0.1:"), f"front address '172.17.0.1:' {ADDRESS_RULE}"),
        (("app", "172.17.0.1:0"), f"front address '172.17.0.1:0' {ADDRESS_RULE}"),
        (("app", "172.17.0.1:65536"), f"front address '172.17.0.1:65536' {ADDRESS_RULE}"),
        (("app", "172.17.0.1:80 "), f"front address '172.17.0.1:80 ' {ADDRESS_RULE}"),
        (("app", "172.17.0.1:http"), f"front address '172.17.0.1:http' {ADDRESS_RULE}"),
        (("app", "172.17.0.1:-1"), f"front address '172.17.0.1:-1' {ADDRESS_RULE}"),
        (("app", "172.17.0.256:80"), f"front address '172.17.0.256:80' {ADDRESS_RULE}"),
        (("app", "172.17.0.1;x:80"), f"front address '172.17.0.1;x:80' {ADDRESS_RULE}"),
        (("app", ""), f"front address '' {ADDRESS_RULE}"),
        (("app", None), f"front address None {ADDRESS_RULE}"),
        (("app", 18000), f"front address 18000 {ADDRESS_RULE}"),
        (("app", "172.17.0.1:1", "172.17.0.3"), f"target address '172.17.0.3' {ADDRESS_RULE}"),
        (("app", "172.17.0.1:1", ":8000"), f"target address ':8000' {ADDRESS_RULE}"),
        (("app", "172.17.0.1:1", "1.2.3.4:0"), f"target address '1.2.3.4:0' {ADDRESS_RULE}"),
        (
            ("app", "172.17.0.1:1", "1.2.3.4:65536"),
            f"target address '1.2.3.4:65536' {ADDRESS_RULE}",
        ),
        (("app", "172.17.0.1:1", "h:80"), f"target address 'h:80' {ADDRESS_RULE}"),
        (
            ("app", "172.17.0.1:1", "1.2.3.4:80", "ABCDEF1"),
            f"release 'ABCDEF1' is invalid: {SHA_RULE}",
        ),
        (
            ("app", "172.17.0.1:1", "1.2.3.4:80", "abc123"),
            f"release 'abc123' is invalid: {SHA_RULE}",
        ),
        (
            ("app", "172.17.0.1:1", "1.2.3.4:80", 1234567),
            f"release 1234567 is invalid: {SHA_RULE}, given as a string (quote it)",
        ),
        (("app", "172.17.0.1:1", "1.2.3.4:80", "", "Blue"), f"slot 'Blue' {SLOT_RULE}"),
        (("app", "172.17.0.1:1", "1.2.3.4:80", "", "blue-1"), f"slot 'blue-1' {SLOT_RULE}"),
        (("app", "172.17.0.1:1", "1.2.3.4:80", "", "blue\n"), f"slot 'blue\\n' {SLOT_RULE}"),
        (("app", "172.17.0.1:1", "1.2.3.4:80", "", "a" * 17), f"slot {'a' * 17!r} {SLOT_RULE}"),
        (("app", "172.17.0.1:1", "1.2.3.4:80", "", 1), f"slot 1 {SLOT_RULE}"),
        (("app", "172.17.0.1:1", "1.2.3.4:80", "", ["blue"]), f"slot (a list) {SLOT_RULE}"),
    ],
)
def test_upstream_text_refuses(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        upstream_text(*args)
    assert str(caught.value) == message


def test_the_app_name_is_checked_before_the_addresses() -> None:
    with pytest.raises(AnsibleFilterError, match=r"^app_name 'A' is invalid"):
        upstream_text("A", "nowhere")


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("172.17.0.1:18000", ("172.17.0.1", 18000)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("255.255.255.255:65535", ("255.255.255.255", 65535)),
        ("10.0.0.1:00080", ("10.0.0.1", 80)),
    ],
)
def test_address(value: str, parsed: tuple[str, int]) -> None:
    assert address(value, "x") == parsed


def test_address_names_what_it_checks() -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        address("010.0.0.1:80", "the thing")
    assert str(caught.value) == f"the thing '010.0.0.1:80' {ADDRESS_RULE}"


# --------------------------------------------------------------------------- nft accepts it

RULE_TEXT = (
    "add rule ip edge_proxy app-melk-ai ip daddr 172.17.0.1 tcp dport 18000 dnat to 1.2.3.4:80\n"
)


def nft_command() -> str | None:
    return shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")


def nft_check(nft: str, path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """nft's dry run (-c): parses the script and has the kernel check the transaction."""
    path.write_text(text, encoding="utf-8")
    return subprocess.run(
        [nft, "-c", "-f", str(path)], capture_output=True, text=True, check=False, timeout=30
    )


@pytest.fixture
def nft(tmp_path: Path) -> str:
    """nft, which make testbed installs on the host; a test that needs it fails (never
    skips) where nft is missing or cannot check a transaction (these tests run in unit-docker)."""
    found = nft_command()
    if found is None:
        pytest.fail(
            "nft is not installed (make testbed installs nftables): "
            "the switch file was not checked by nft"
        )
    probe = nft_check(found, tmp_path / "probe.nft", "add table ip edge_proxy\n")
    if probe.returncode != 0:
        pytest.fail(f"nft -c cannot check a transaction here: {probe.stderr.strip()}")
    return found


@pytest.mark.parametrize(
    "given_",
    [
        {"release": SHA_A, "slot": "blue"},
        {"release": "abcdef1", "slot": "green", "ip": "172.17.0.4"},
        {"container": ""},  # the placeholder
        {"app": "shop", "front_host": "127.0.0.1", "front_port": 1, "port": 65535},
    ],
)
@pytest.mark.docker  # needs nft, which make testbed installs (unit-docker)
def test_nft_accepts_the_rendered_switch_file(
    render: Any, nft: str, tmp_path: Path, given_: dict[str, Any]
) -> None:
    checked = nft_check(nft, tmp_path / "app.upstream", render(**given_))
    assert (checked.returncode, checked.stderr) == (0, "")


@pytest.mark.docker  # needs nft, which make testbed installs (unit-docker)
@pytest.mark.parametrize("app", ["a", "a" * 63, "x--y", "a-", "9", "1app", "0-0", "accept", "ip"])
def test_every_valid_app_name_makes_a_chain_nft_accepts(nft: str, tmp_path: Path, app: str) -> None:
    """app_name allows a leading digit and any word; nft's chain names do not (a name that
    is a number or a keyword of nft's language is a syntax error)."""
    text = upstream_text(app, "172.17.0.1:18000", "172.17.0.3:8000", SHA_A, "blue")
    checked = nft_check(nft, tmp_path / "app.upstream", text)
    assert (checked.returncode, checked.stderr) == (0, "")


@pytest.mark.docker  # needs nft, which make testbed installs (unit-docker)
def test_nft_refuses_a_broken_switch_file(nft: str, tmp_path: Path) -> None:
    """The check above can fail: nft -c here really parses and checks the file."""
    broken = head("melk-ai") + RULE_TEXT.replace("dnat to", "dnat too")
    assert nft_check(nft, tmp_path / "broken.upstream", broken).returncode != 0
    assert nft_check(nft, tmp_path / "ok.upstream", head("melk-ai") + RULE_TEXT).returncode == 0


# --------------------------------------------------------------------------- parser

RELEASED = "# release abcdef1\n# slot green\n" + head("melk-ai") + RULE_TEXT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (RELEASED, {"sha": "abcdef1", "slot": "green", "port": 18002}),
        (MANAGED + RELEASED, {"sha": "abcdef1", "slot": "green", "port": 18002}),
        (  # the marks may come anywhere, spaced loosely
            head("x") + RULE_TEXT + "#slot  blue \n#release  abcdef1 \n",
            {"sha": "abcdef1", "slot": "blue", "port": 18001},
        ),
        (RULE_TEXT.rstrip("\n"), {"sha": None, "slot": None, "port": None}),  # no marks
        ("# slot blue\n" + RULE_TEXT, {"sha": None, "slot": "blue", "port": 18001}),
        ("# release abcdef1\n" + RULE_TEXT, {"sha": "abcdef1", "slot": None, "port": None}),
        ("# slot red\n" + RULE_TEXT, {"sha": None, "slot": None, "port": None}),  # unknown slot
        ("# slot Blue\n" + RULE_TEXT, {"sha": None, "slot": None, "port": None}),
        ("# slot blue x\n" + RULE_TEXT, {"sha": None, "slot": None, "port": None}),
        ("# slots blue\n" + RULE_TEXT, {"sha": None, "slot": None, "port": None}),
        ("x # slot blue\n" + RULE_TEXT, {"sha": None, "slot": None, "port": None}),
        ("# slot\n" + RULE_TEXT, {"sha": None, "slot": None, "port": None}),
        ("# release abcdef\n" + RULE_TEXT, {"sha": None, "slot": None, "port": None}),
        ("# release ABCDEF1\n" + RULE_TEXT, {"sha": None, "slot": None, "port": None}),
        ("# released abcdef1\n" + RULE_TEXT, {"sha": None, "slot": None, "port": None}),
        ("# release abcdef1 x\n" + RULE_TEXT, {"sha": None, "slot": None, "port": None}),
        # no rule that forwards: before the first deploy, or not a switch file
        ("# release abcdef1\n# slot blue\n" + head("melk-ai"), None),
        (PLACEHOLDER, None),
        (MANAGED + PLACEHOLDER, None),
        ("# slot blue\n# " + RULE_TEXT, None),  # a rule commented out
        ("# slot blue\n" + RULE_TEXT.replace(":80\n", "\n"), None),  # no port
        ("# slot blue\n" + RULE_TEXT.replace(":80\n", ":123456\n"), None),
        ("# slot blue\n" + RULE_TEXT.replace("dnat to", "snat to"), None),
        ("# slot blue\n" + RULE_TEXT.rstrip() + " x\n", None),
        ("server 127.0.0.1:18001 max_fails=0;\n# slot blue\n", None),  # an nginx upstream
        ("", None),
        (None, None),
        (("# slot blue\n" + RULE_TEXT).encode(), None),
        ("garbage", None),
    ],
)
def test_serving_release(text: object, expected: dict[str, object] | None) -> None:
    assert serving_release(text, SLOT_PORTS) == expected


def test_serving_release_reads_slot_ports_given_as_strings() -> None:
    served = serving_release("# slot green\n" + RULE_TEXT, {"blue": "18001", "green": "18002"})
    assert served == {"sha": None, "slot": "green", "port": 18002}


def test_serving_release_takes_the_port_from_the_slot_not_the_rule() -> None:
    """The rule goes to the container (its address changes on a restart); the slot's host
    port is what the deploy compares."""
    served = serving_release("# slot blue\n" + RULE_TEXT, {"blue": 18009})
    assert served == {"sha": None, "slot": "blue", "port": 18009}


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


def test_upstream_path_strips_only_trailing_slashes() -> None:
    assert upstream_path("app", "/srv/proxyX//") == "/srv/proxyX/app.upstream"


def test_filter_module_exposes_the_contract() -> None:
    filters = FilterModule().filters()
    assert set(filters) == {"upstream_path", "edge_record_path", "upstream_text", "serving_release"}
    assert all(filters[name] is getattr(edge_upstream, name) for name in filters)


# --------------------------------------------------------------------------- front port block


def test_a_block_of_front_ports_is_forwarded_alike(render: Any) -> None:
    """nginx spreads its connections over the block; one rule forwards every port of it."""
    text = render(release=SHA_B, slot="green", front_ports=16)
    assert text.splitlines()[-1] == (
        "add rule ip edge_proxy app-melk-ai ip daddr 172.17.0.1 tcp dport 18000-18015"
        " dnat to 172.17.0.3:8000"
    )
    assert serving_release(text, SLOT_PORTS) == {"sha": SHA_B, "slot": "green", "port": 18002}
    assert "tcp dport 18000 dnat" in render(release=SHA_B, front_ports="1")


@pytest.mark.parametrize(
    ("front", "ports", "message"),
    [
        (
            "172.17.0.1:18000",
            0,
            "front_ports 0 is invalid: give 1 to 256 ports that fit above 18000",
        ),
        ("172.17.0.1:18000", 257, "front_ports 257 is invalid"),
        (
            "172.17.0.1:65530",
            7,
            "front_ports 7 is invalid: give 1 to 256 ports that fit above 65530",
        ),
        ("172.17.0.1:18000", "many", "front_ports 'many' is invalid"),
    ],
)
def test_a_front_port_block_that_does_not_fit_is_refused(
    front: str, ports: object, message: str
) -> None:
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        upstream_text("melk-ai", front, "172.17.0.3:8000", front_ports=ports)
    assert "65530-65535" in upstream_text("a", "1.2.3.4:65530", "1.2.3.5:80", front_ports=6)
