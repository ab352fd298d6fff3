"""Unit tests for several apps on one host: filter_plugins/edge_records.py (port blocks,
collisions, catch-all ports), edge_proxy's edge_apps module (reading the records), and the
site and catch-all templates (routing by name)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import edge_apps
import edge_records
import edge_upstream
import jinja2
import proxy_inputs
import pytest
import tls_inputs
from ansible.errors import AnsibleFilterError
from edge_records import (
    catch_all_ports,
    edge_conflicts,
    edge_record,
    host_apps,
    port_block,
    slot_ports,
)
from hypothesis import given
from hypothesis import strategies as st
from module_harness import run_module

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "roles" / "edge_proxy" / "templates"


def record(
    app: str,
    port: int = 80,
    names: list[str] | None = None,
    block: int = 18000,
    tls: int | None = None,
) -> dict[str, Any]:
    return edge_record(app, port, tls, names or [], [block, 16])


def on_host(*records: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["app"]: r for r in records}


# --------------------------------------------------------------------------- records


def test_a_record_holds_ports_names_and_block() -> None:
    assert edge_record("shop", "80", 443, ["B.example.com", "a.example.com"], [18016, 16]) == {
        "app": "shop",
        "proxy_port": 80,
        "tls_port": 443,
        "server_names": ["a.example.com", "b.example.com"],
        "port_block": [18016, 16],
    }
    assert edge_record("shop", 80, None, [], [18000, 16])["tls_port"] is None


@pytest.mark.parametrize(
    ("app", "block", "message"),
    [
        ("../etc", [18000, 16], "app_name '../etc' is invalid"),
        ("shop", [18000], "port_block [18000] is invalid"),
        ("shop", [65530, 16], "port_block [65530, 16] is invalid"),
        ("shop", [18000, 2], "port_block [18000, 2] is invalid"),
    ],
)
def test_a_bad_record_is_refused(app: str, block: list[int], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        edge_record(app, 80, None, [], block)


def test_an_app_without_a_record_owns_the_default_block_as_default_server() -> None:
    apps = host_apps({"shop": record("shop", names=["shop.test"], block=18016)}, ["melk-ai"])
    assert apps["melk-ai"] == record("melk-ai")
    assert apps["shop"]["port_block"] == [18016, 16]


# --------------------------------------------------------------------------- port blocks


def test_the_first_app_gets_the_first_block_and_slots_18001_18002() -> None:
    assert port_block("melk-ai", {}) == [18000, 16]
    assert slot_ports([18000, 16]) == {"blue": 18001, "green": 18002}


def test_a_new_app_gets_the_lowest_free_block_and_an_app_keeps_its_own() -> None:
    host = on_host(record("a"), record("c", names=["c.test"], block=18032))
    assert port_block("b", host) == [18016, 16]
    assert port_block("d", {**host, "b": record("b", names=["b.test"], block=18016)}) == [
        18048,
        16,
    ]
    assert port_block("c", host) == [18032, 16]  # its record's, even if a lower one is free


def test_a_block_overlapping_an_odd_one_moves_past_it() -> None:
    host = on_host(edge_record("odd", 80, None, [], [18010, 4]))
    assert port_block("b", host) == [18014, 16]


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8))
def test_allocated_blocks_never_overlap(sizes: list[int]) -> None:
    host: dict[str, dict[str, Any]] = {}
    for index, size in enumerate(sizes):
        name = f"app{index}"
        block = port_block(name, host, 18000, max(size, 3))
        host[name] = edge_record(name, 80, None, [f"{name}.test"], block)
    taken = [set(range(r["port_block"][0], sum(r["port_block"]))) for r in host.values()]
    assert sum(len(t) for t in taken) == len(set().union(*taken))


# --------------------------------------------------------------------------- collisions


def test_apps_with_distinct_names_share_the_port() -> None:
    host = on_host(record("melk-ai"))
    assert edge_conflicts(record("shop", names=["shop.test"], block=18016), host) == []
    # re-provisioning an app is never a collision with itself
    assert edge_conflicts(record("melk-ai"), host) == []


A_DEFAULT = record("a", tls=8443)
A_NAMED = record("a", names=["a.test"], tls=8443)


@pytest.mark.parametrize(
    ("other", "mine", "message"),
    [
        (
            A_DEFAULT,
            record("b", block=18016),
            "port 80: app a is already its default server (it has no proxy_server_names); "
            "give this app proxy_server_names",
        ),
        (
            A_NAMED,
            record("b", names=["A.test"], block=18016),
            "server name a.test on port 80 is already app a's",
        ),
        (
            A_NAMED,
            record("b", port=8443, names=["b.test"], block=18016),
            "port 8443: app a serves tls HTTP on it, this app plain; one port cannot serve both",
        ),
        (
            A_NAMED,
            record("b", names=["b.test"], block=18008),
            "port block 18008-18023 overlaps app a's 18000-18015",
        ),
        (
            A_NAMED,
            record("b", port=18005, names=["b.test"], block=18016),
            "port 18005 lies in app a's port block 18000-18015",
        ),
        (
            A_NAMED,
            record("b", port=18020, names=["b.test"], block=18016),
            "port 18020 lies in this app's own port block 18016-18031",
        ),
    ],
)
def test_a_name_or_port_another_app_holds_is_named(
    other: dict[str, Any], mine: dict[str, Any], message: str
) -> None:
    assert message in edge_conflicts(mine, on_host(other))


# --------------------------------------------------------------------------- catch-all


def test_a_port_without_a_default_app_gets_a_catch_all() -> None:
    named = record("shop", names=["shop.test"], tls=443, block=18016)
    assert catch_all_ports(on_host(named)) == {"plain": [80], "tls": [443]}
    assert catch_all_ports(on_host(named, record("melk-ai", tls=443))) == {
        "plain": [],
        "tls": [],
    }
    assert catch_all_ports({}) == {"plain": [], "tls": []}


# --------------------------------------------------------------------------- module


def test_the_module_reads_records_and_lists_apps_without_one(tmp_path: Path) -> None:
    (tmp_path / "shop.json").write_text(json.dumps(record("shop", names=["shop.test"])) + "\n")
    (tmp_path / "shop.upstream").write_text("# no release deployed yet\n")
    (tmp_path / "melk-ai.upstream").write_text("# no release deployed yet\n")
    (tmp_path / "melk-ai.maintenance.conf").write_text("")
    result = run_module(edge_apps.main, {"path": str(tmp_path)})
    assert result["changed"] is False
    assert result["records"] == {"shop": record("shop", names=["shop.test"])}
    assert result["unrecorded"] == ["melk-ai"]
    assert run_module(edge_apps.main, {"path": str(tmp_path / "none")})["records"] == {}


@pytest.mark.parametrize("text", ["{not json", '{"app": "other"}', "[]"])
def test_a_damaged_record_fails_the_module(tmp_path: Path, text: str) -> None:
    (tmp_path / "shop.json").write_text(text)
    result = run_module(edge_apps.main, {"path": str(tmp_path)})
    assert result["rc"] == 1
    assert "shop.json is not an edge record of app shop" in result["msg"]


# --------------------------------------------------------------------------- templates


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        trim_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # nginx configuration, not HTML
    )
    for module in (edge_upstream, edge_records, tls_inputs, proxy_inputs):
        env.filters.update(module.FilterModule().filters())
    env.filters["combine"] = lambda a, b: {**a, **b}
    return env


def site(names: list[str]) -> str:
    return (
        environment()
        .get_template("site.conf.j2")
        .render(
            ansible_managed="managed",
            edge_proxy_app_name="shop",
            edge_proxy_port=80,
            edge_proxy_state_dir="/etc/nginx/edge-proxy",
            edge_proxy_client_max_body_size="10m",
            edge_proxy_connect_timeout=5,
            edge_proxy_read_timeout=60,
            __edge_proxy_front_host="172.17.0.1",
            edge_proxy_port_block=[18016, 16],
            edge_proxy_server_names=names,
            edge_proxy_tls_port=443,
            edge_proxy_hsts_seconds=0,
            edge_proxy_health_path="/health",
            edge_proxy_acme_webroot="/var/lib/edge-proxy/acme",
            __edge_proxy_access_log="/var/log/nginx/shop.access.log",
        )
    )


def test_an_app_with_names_answers_only_to_them_on_its_own_block() -> None:
    text = site(["shop.test", "www.shop.test"])
    assert "listen 80;\n" in text
    assert "default_server" not in text
    assert "server_name shop.test www.shop.test;" in text
    assert "server 172.17.0.1:18016 max_fails=0;" in text
    assert "server 172.17.0.1:18031 max_fails=0;" in text
    assert ":18032 " not in text


def test_an_app_without_names_is_the_default_server() -> None:
    text = site([])
    assert "listen 80 default_server;" in text
    assert "server_name _;" in text


def test_the_catch_all_serves_ports_without_a_default_app() -> None:
    named = record("shop", names=["shop.test"], tls=443, block=18016)
    text = (
        environment()
        .get_template("catch-all.conf.j2")
        .render(
            ansible_managed="managed",
            __edge_proxy_apps={},
            edge_proxy_app_name="shop",
            __edge_proxy_record=named,
        )
    )
    assert "listen 80 default_server;" in text
    assert "return 404;" in text
    # none for HTTPS: a probe of https://<address>/ reaches the port's first app
    assert "443" not in text
    other = (
        environment()
        .get_template("catch-all.conf.j2")
        .render(
            ansible_managed="managed",
            __edge_proxy_apps={"melk-ai": record("melk-ai", tls=443)},
            edge_proxy_app_name="shop",
            __edge_proxy_record=named,
        )
    )
    assert "server {" not in other
