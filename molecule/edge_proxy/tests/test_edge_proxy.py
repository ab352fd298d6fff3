"""Verify edge_proxy on the converged server: nginx, the site, the checker, and the
switch entry point as side_effect.yml drove it (its outcomes in switch-outcomes.json).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")

UPSTREAM = "/etc/nginx/edge-proxy/melk-ai.upstream"
CHECKER = "/usr/local/sbin/edge-proxy-check-upstream"
# The page of each backend (prepare.yml); side_effect ends on release B, 18002.
MARKER_A = "melk-mol-backend-marker-18001"
MARKER_B = "melk-mol-backend-marker-18002"
REFUSED = ["validator", "broken_config"]

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


def test_nginx_enabled_and_running(host):
    nginx = host.service("nginx")
    assert nginx.is_running
    assert nginx.is_enabled


def test_nginx_config_is_valid(host):
    result = host.run("nginx -t")
    assert result.rc == 0, result.stderr


def servers(upstream: str) -> list[str]:
    """The addresses of the server lines of an upstream file."""
    return [line.split()[1] for line in upstream.splitlines() if line.startswith("server ")]


@pytest.fixture(scope="module")
def releases(host) -> dict[str, str]:
    """The shas of release A (18001) and B (18002), from molecule.yml's inventory."""
    variables = host.ansible.get_variables()
    return {"A": variables["molecule_release_a"], "B": variables["molecule_release_b"]}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, Any]]:
    """What each switch of side_effect.yml did, by case name."""
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "switch-outcomes.json"
    return dict(json.loads(path.read_text()))


def test_proxy_serves_the_last_release_on_port_80(host):
    status, body = fetch(host, "http://127.0.0.1:80/")
    assert status == 200
    assert MARKER_B in body


def test_site_listens_on_proxy_port(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening
    site = host.file("/etc/nginx/conf.d/melk-ai.conf")
    assert site.exists
    assert "listen 80 default_server;" in site.content_string
    assert f"include {UPSTREAM};" in site.content_string


def test_upstream_names_the_last_release(host, releases):
    upstream = host.file(UPSTREAM)
    assert upstream.exists
    assert upstream.user == "root"
    assert upstream.mode == 0o644
    assert servers(upstream.content_string) == ["127.0.0.1:18002"]
    assert f"# release {releases['B']}" in upstream.content_string.splitlines()


def test_default_site_is_gone(host):
    assert not host.file("/etc/nginx/sites-enabled/default").exists


def test_checker_installed(host):
    checker = host.file(CHECKER)
    assert checker.exists
    assert checker.mode == 0o755


@pytest.mark.parametrize(
    "snippet",
    [
        "server ;;",
        "server 127.0.0.1:70000;",
        "server 127.0.0.1:18001",  # no semicolon
        "proxy_pass http://127.0.0.1:18001;",  # not allowed in an upstream block
    ],
)
def test_checker_refuses_a_broken_snippet(host, snippet):
    path = "/tmp/melk-mol-bad.upstream"
    host.run(f"printf '%s\\n' '{snippet}' > {path}")
    result = host.run(f"{CHECKER} {path}")
    host.run(f"rm -f {path}")
    assert result.rc != 0, f"the checker accepted {snippet!r}"


def test_checker_accepts_a_good_snippet(host):
    path = "/tmp/melk-mol-good.upstream"
    host.run(f"printf 'server 127.0.0.1:18002 max_fails=0;\\n' > {path}")
    result = host.run(f"{CHECKER} {path}")
    host.run(f"rm -f {path}")
    assert result.rc == 0, result.stderr


def test_checker_accepts_the_live_file(host):
    result = host.run(f"{CHECKER} {UPSTREAM}")
    assert result.rc == 0, result.stderr


def test_checker_leaves_no_files_behind(host):
    # Its throwaway config must go, also after the validations converge ran.
    leftovers = "find /tmp -mindepth 2 -maxdepth 2 -name nginx.conf"
    assert host.check_output(leftovers) == ""
    before = set(host.check_output("ls -A /tmp").split())
    assert host.run(f"{CHECKER} {UPSTREAM}").rc == 0
    host.run("printf 'server ;;\\n' > /tmp/melk-mol-bad")
    assert host.run(f"{CHECKER} /tmp/melk-mol-bad").rc != 0
    host.run("rm -f /tmp/melk-mol-bad")
    assert set(host.check_output("ls -A /tmp").split()) == before
    assert host.check_output(leftovers) == ""


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_switch_started_from_release_a(outcomes, releases, case):
    # positive control: the switch had a serving release to keep
    before = outcomes[case]["before"]["upstream"]
    assert servers(before) == ["127.0.0.1:18001"]
    assert f"# release {releases['A']}" in before.splitlines()


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("validator", "70000"),  # nginx's words on the candidate file: invalid port
        ("broken_config", "zz-molecule-broken.conf"),  # nginx -t names the broken file
    ],
)
def test_a_refused_switch_fails_naming_the_cause(outcomes, case, cause):
    outcome = outcomes[case]
    assert outcome["failed"], f"the switch was not refused, so no rescue could act: {outcome}"
    assert cause in outcome["msg"], outcome["msg"]


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_switch_puts_the_old_upstream_back_byte_for_byte(outcomes, case):
    before, after = outcomes[case]["before"], outcomes[case]["after"]
    assert after["upstream"] == before["upstream"]
    assert after["mode"] == "0644"


def test_a_switch_the_checker_refuses_never_touches_the_live_file(outcomes):
    # the candidate is checked on its own first: the live file is left alone,
    # not replaced and put back (a new file, written later). Not the inode: a
    # file put back may get the inode number the replaced one freed.
    before, after = outcomes["validator"]["before"], outcomes["validator"]["after"]
    assert after["mtime_ns"] == before["mtime_ns"]


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_switch_keeps_the_old_release_serving(outcomes, case):
    before, after = outcomes[case]["before"], outcomes[case]["after"]
    assert MARKER_A in after["served"], after["served"]
    assert after["nginx_pid"] == before["nginx_pid"]


def test_a_good_switch_moves_traffic_and_names_the_release(outcomes, releases):
    outcome = outcomes["switch"]
    assert not outcome["failed"], outcome["msg"]
    after = outcome["after"]
    assert MARKER_B in after["served"], after["served"]
    assert servers(after["upstream"]) == ["127.0.0.1:18002"]
    assert f"# release {releases['B']}" in after["upstream"].splitlines()
    assert after["mode"] == "0644"


def test_a_good_switch_reloads_nginx_and_replaces_the_file(outcomes):
    before, after = outcomes["switch"]["before"], outcomes["switch"]["after"]
    # a graceful reload keeps the master process; a restart would replace it
    assert after["nginx_pid"] == before["nginx_pid"]
    # the new file was renamed over the old one, not written into it in place
    # (it was created while the old one still held its inode number)
    assert after["inode"] != before["inode"]
