"""Verify edge_proxy on the converged server: nginx, the site, the switch and its validator."""

from __future__ import annotations

import os

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")

UPSTREAM = "/etc/nginx/edge-proxy/melk-ai.upstream"
CHECKER = "/usr/local/sbin/edge-proxy-check-upstream"
MARKER = "melk-mol-backend-marker-18001"

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


def test_proxy_serves_the_backend_on_port_80(host):
    status, body = fetch(host, "http://127.0.0.1:80/")
    assert status == 200
    assert MARKER in body


def test_site_listens_on_proxy_port(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening
    site = host.file("/etc/nginx/conf.d/melk-ai.conf")
    assert site.exists
    assert "listen 80 default_server;" in site.content_string
    assert f"include {UPSTREAM};" in site.content_string


def test_upstream_names_the_backend(host):
    upstream = host.file(UPSTREAM)
    assert upstream.exists
    assert upstream.user == "root"
    assert upstream.mode == 0o644
    lines = upstream.content_string.splitlines()
    servers = [line.split()[1] for line in lines if line.startswith("server ")]
    assert servers == ["127.0.0.1:18001"]


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


def test_refused_switch_left_the_live_file_unchanged(host):
    # converge tried a switch to port 70000; the validator must have refused it.
    content = host.file(UPSTREAM).content_string
    assert "70000" not in content
    assert "server 127.0.0.1:18001 " in content


def test_a_reload_refuses_an_invalid_config_and_keeps_serving(host):
    broken = "/etc/nginx/conf.d/zz-broken.conf"
    master = host.check_output("cat /run/nginx.pid")
    host.run(f"echo 'this is not nginx;' > {broken}")
    try:
        reload = host.run("systemctl reload nginx")
        assert reload.rc != 0, "systemctl reload accepted an invalid configuration"
        assert host.check_output("cat /run/nginx.pid") == master
        status, body = fetch(host, "http://127.0.0.1:80/")
        assert status == 200
        assert MARKER in body
    finally:
        host.run(f"rm -f {broken}")
    assert host.run("systemctl reload nginx").rc == 0
