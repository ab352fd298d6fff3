"""Verify edge_proxy on the converged server: nginx, the site, the switch file and
its nftables rule, the boot restore unit, and the switch entry point as
side_effect.yml drove it (its outcomes in switch-outcomes.json).

Release A runs in melk-ai-blue, B in melk-ai-green (prepare.yml); side_effect
ends on B, after the boot restore pointed the rule at B's new address.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")

UPSTREAM = "/etc/nginx/edge-proxy/melk-ai.upstream"
CHAIN = "nft list chain ip edge_proxy app-melk-ai"  # edge_upstream.chain_name
FRONT_PORT = 18000
FRONT_PORTS = 16  # edge_proxy_front_ports: nginx spreads its connections over the block
MARKER_A = "melk-mol-backend-marker-blue"
MARKER_B = "melk-mol-backend-marker-green"
REFUSED = ["missing_container", "bad_release"]
DNAT = re.compile(r"dnat to ([0-9.]+):([0-9]+)")

# The server image has no curl: fetch with python3, print the status and the body.
FETCH = (
    'python3 -c "import sys, urllib.request, urllib.error\n'
    "try:\n"
    "    r = urllib.request.urlopen(sys.argv[1], timeout=5)\n"
    "except urllib.error.HTTPError as e:\n"
    "    r = e\n"
    "print(r.status)\n"
    'print(r.read().decode())" {url}'
)


def fetch(host, url: str) -> tuple[int, str]:
    out = host.check_output(FETCH.format(url=url))
    status, _, body = out.partition("\n")
    return int(status), body


def targets(text: str) -> list[str]:
    """The ip:port every `dnat to` of a switch file or an nft listing names."""
    return [f"{ip}:{port}" for ip, port in DNAT.findall(text)]


def address(host, container: str) -> str:
    fmt = "{{.NetworkSettings.IPAddress}}"
    return str(host.check_output(f"docker inspect --format '{fmt}' {container}")).strip()


@pytest.fixture(scope="module")
def releases(host) -> dict[str, str]:
    """The shas of release A (melk-ai-blue) and B (melk-ai-green), from molecule.yml."""
    variables = host.ansible.get_variables()
    return {"A": variables["molecule_release_a"], "B": variables["molecule_release_b"]}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, Any]]:
    """What each case of side_effect.yml did, by case name."""
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "switch-outcomes.json"
    return dict(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def gateway(host) -> str:
    """The Docker bridge's gateway: the default front address."""
    fmt = "{{(index .IPAM.Config 0).Gateway}}"
    return str(host.check_output(f"docker network inspect bridge --format '{fmt}'")).strip()


def test_nginx_enabled_and_running(host):
    nginx = host.service("nginx")
    assert nginx.is_running
    assert nginx.is_enabled


def test_nginx_config_is_valid(host):
    result = host.run("nginx -t")
    assert result.rc == 0, result.stderr


def test_boot_restore_unit_enabled(host):
    assert host.service("edge-proxy-restore").is_enabled
    assert host.file("/usr/local/sbin/edge-proxy-restore").mode == 0o755
    assert host.file("/usr/local/sbin/edge-proxy-connections").mode == 0o755


def test_proxy_serves_the_last_release_on_port_80(host):
    status, body = fetch(host, "http://127.0.0.1:80/")
    assert status == 200
    assert MARKER_B in body


def test_the_access_log_times_each_request_and_is_not_world_readable(host):
    fetch(host, "http://127.0.0.1:80/")
    log = host.file("/var/log/nginx/melk-ai.access.log")
    assert (log.user, log.group, log.mode) == ("www-data", "adm", 0o640)
    # buffered: nginx writes it within a second; waited for, at most 5 s
    line = host.run(
        "for i in $(seq 50); do grep -F '\"GET / HTTP/1.1\" 200' "
        "/var/log/nginx/melk-ai.access.log | tail -n 1 | grep . && break; sleep 0.1; done"
    ).stdout
    for field in ("msec=", "request_time=", "upstream_connect=", "upstream_response="):
        assert field in line, line


def test_site_forwards_to_the_front_address(host, gateway):
    assert host.socket("tcp://0.0.0.0:80").is_listening
    site = host.file("/etc/nginx/conf.d/melk-ai.conf")
    assert "listen 80 default_server;" in site.content_string
    assert "proxy_pass http://melk-ai-front;" in site.content_string
    for port in range(FRONT_PORT, FRONT_PORT + FRONT_PORTS):
        assert f"server {gateway}:{port} max_fails=0;" in site.content_string
    assert "upstream" not in site.content_string.split("server {", 1)[1]


def test_the_app_records_its_port_block_and_the_host_has_no_catch_all(host, gateway):
    """The only app, without server names: the default server, owner of the first block."""
    record = host.file("/etc/nginx/edge-proxy/melk-ai.json")
    assert record.mode == 0o644
    content = json.loads(record.content_string)
    # the digest of the app's edge settings, which a deploy compares with its own
    assert re.fullmatch(r"[0-9a-f]{64}", content.pop("settings_digest"))
    assert content == {
        "app": "melk-ai",
        "proxy_port": 80,
        "tls_port": None,
        "server_names": [],
        "port_block": [FRONT_PORT, FRONT_PORTS],
        "front_host": gateway,
        "tls": "off",
    }
    catch_all = host.file("/etc/nginx/conf.d/00-edge-proxy-catch-all.conf").content_string
    assert "server {" not in catch_all


def test_switch_file_and_rule_name_the_last_release(host, releases, gateway):
    upstream = host.file(UPSTREAM)
    assert upstream.user == "root"
    assert upstream.mode == 0o644
    text = upstream.content_string
    live = f"{address(host, 'melk-ai-green')}:8000"
    assert f"# release {releases['B']}" in text.splitlines()
    assert "# slot green" in text.splitlines()
    assert targets(text) == [live]
    rule = host.check_output(CHAIN)
    assert targets(rule) == [live]
    assert f"ip daddr {gateway} tcp dport {FRONT_PORT}-{FRONT_PORT + FRONT_PORTS - 1}" in rule
    # the file is what nft checks and applies
    assert host.run(f"nft -c -f {UPSTREAM}").rc == 0


def test_default_site_is_gone(host):
    assert not host.file("/etc/nginx/sites-enabled/default").exists


@pytest.mark.parametrize("case", [*REFUSED, "switch"])
def test_each_switch_started_from_release_a(outcomes, releases, case):
    # positive control: the switch had a serving release to keep or leave
    before = outcomes[case]["before"]
    assert f"# release {releases['A']}" in before["upstream"].splitlines()
    assert "# slot blue" in before["upstream"].splitlines()
    assert targets(before["rule"]) == targets(before["upstream"]) != []


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("missing_container", "melk-ai-missing"),  # docker: no such object
        ("bad_release", "B2B2-not-a-sha"),  # the writer names the bad release
    ],
)
def test_a_refused_switch_fails_naming_the_cause(outcomes, case, cause):
    outcome = outcomes[case]
    assert outcome["failed"], f"the switch was not refused, so no rescue could act: {outcome}"
    assert cause in outcome["msg"], outcome["msg"]


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_switch_leaves_file_and_rule_byte_for_byte(outcomes, case):
    before, after = outcomes[case]["before"], outcomes[case]["after"]
    assert after["upstream"] == before["upstream"]
    assert after["rule"] == before["rule"]
    assert after["mtime_ns"] == before["mtime_ns"], "the live file was written"
    assert after["mode"] == "0644"


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_switch_keeps_the_old_release_serving(outcomes, case):
    before, after = outcomes[case]["before"], outcomes[case]["after"]
    assert MARKER_A in after["served"], after["served"]
    assert after["nginx_pid"] == before["nginx_pid"]
    assert after["nginx_workers"] == before["nginx_workers"]


def test_a_good_switch_moves_traffic_and_names_the_release(outcomes, releases):
    outcome = outcomes["switch"]
    assert not outcome["failed"], outcome["msg"]
    after = outcome["after"]
    assert MARKER_B in after["served"], after["served"]
    assert "# slot green" in after["upstream"].splitlines()
    assert f"# release {releases['B']}" in after["upstream"].splitlines()
    assert (
        targets(after["rule"])
        == targets(after["upstream"])
        != targets(outcome["before"]["upstream"])
    )
    assert after["mode"] == "0644"


def test_a_good_switch_does_not_reload_nginx(outcomes):
    before, after = outcomes["switch"]["before"], outcomes["switch"]["after"]
    # the switch is the kernel's rule: nginx's master and workers stay the same
    # processes (a reload would replace every worker, a restart the master too)
    assert after["nginx_pid"] == before["nginx_pid"]
    assert after["nginx_workers"] == before["nginx_workers"] != []


def test_a_good_switch_replaces_the_file_atomically(outcomes):
    before, after = outcomes["switch"]["before"], outcomes["switch"]["after"]
    # the new file was renamed over the old one, not written into it in place
    assert after["inode"] != before["inode"]


def test_the_restore_case_gave_b_a_new_address(outcomes):
    restore = outcomes["restore"]
    # positive control: the address really changed, and the stale rule served nothing
    assert restore["old_ip"] and restore["new_ip"] and restore["old_ip"] != restore["new_ip"]
    stale = restore["stale"]
    assert targets(stale["rule"]) == [f"{restore['old_ip']}:8000"]
    assert MARKER_B not in stale["served"], stale["served"]


def test_the_boot_restore_points_the_rule_at_the_new_address(outcomes, releases):
    restore = outcomes["restore"]
    after = restore["after"]
    new = f"{restore['new_ip']}:8000"
    assert MARKER_B in after["served"], after["served"]
    assert targets(after["rule"]) == [new]
    assert targets(after["upstream"]) == [new]
    assert "# slot green" in after["upstream"].splitlines()
    assert f"# release {releases['B']}" in after["upstream"].splitlines()
    assert after["mode"] == "0644"
    assert after["nginx_pid"] == restore["stale"]["nginx_pid"]
