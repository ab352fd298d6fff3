"""roles/edge_proxy/templates/site.conf.j2 rendered as the template module renders it
(trim_blocks, the project's filters): plain HTTP only, a supplied certificate, ACME before
and after its certificate exists. nginx itself checks the result in the e2e suite."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import edge_upstream
import jinja2
import proxy_inputs
import pytest
import tls_inputs

ROOT = Path(__file__).resolve().parents[2]
FILES = {"certificate": "/etc/nginx/tls/melk-ai.pem", "key": "/etc/nginx/tls/melk-ai.pem"}


def render(**overrides: Any) -> str:
    app = overrides.get("edge_proxy_app_name", "melk-ai")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROOT / "roles" / "edge_proxy" / "templates"),
        trim_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # nginx configuration, not HTML
    )
    env.filters.update(edge_upstream.FilterModule().filters())
    env.filters.update(tls_inputs.FilterModule().filters())
    env.filters.update(proxy_inputs.FilterModule().filters())
    variables: dict[str, Any] = {
        "ansible_managed": "managed",
        "edge_proxy_app_name": "melk-ai",
        "edge_proxy_port": 80,
        "edge_proxy_state_dir": "/etc/nginx/edge-proxy",
        "edge_proxy_client_max_body_size": "10m",
        "edge_proxy_connect_timeout": 5,
        "edge_proxy_read_timeout": 60,
        "__edge_proxy_front_host": "172.18.0.1",
        "edge_proxy_port_block": [18000, 3],
        "edge_proxy_server_names": [],
        "edge_proxy_tls_port": 443,
        "edge_proxy_hsts_seconds": 0,
        "edge_proxy_health_path": "/health",
        "edge_proxy_acme_webroot": "/var/lib/edge-proxy/acme",
        "__edge_proxy_access_log": f"/var/log/nginx/{app}.access.log",
        **overrides,
    }
    return env.get_template("site.conf.j2").render(**variables)


def servers(text: str) -> list[str]:
    """The server blocks, each from `server {` to its closing brace at column 0."""
    return re.findall(r"^server \{\n.*?^\}", text, flags=re.S | re.M)


def test_nginx_spreads_its_connections_over_the_front_port_block() -> None:
    assert (
        "upstream melk-ai-front {\n"
        "    server 172.18.0.1:18000 max_fails=0;\n"
        "    server 172.18.0.1:18001 max_fails=0;\n"
        "    server 172.18.0.1:18002 max_fails=0;\n"
        "}\n"
    ) in render()
    assert "keepalive" not in render()  # a kept connection would outlive a switch


def test_plain_http_only_proxies_everything() -> None:
    (http,) = servers(render())
    assert "location / {\n        proxy_pass http://melk-ai-front;" in http
    assert "return 301" not in http
    assert "acme-challenge" not in http
    assert "ssl" not in render()


def test_supplied_certificate_serves_https_and_redirects_plain_http() -> None:
    text = render(__edge_proxy_tls_mode="supplied", __edge_proxy_tls_files=FILES)
    http, https = servers(text)
    assert "location / {\n        return 301 https://$host$request_uri;\n    }" in http
    # the health path stays proxied on plain HTTP (the deploy's watch probes it)
    assert 'location = "/health" {\n        proxy_pass http://melk-ai-front;' in http
    assert "acme-challenge" not in http
    assert "listen 443 ssl default_server;" in https
    assert "server_name _;" in https
    # the certificate file is named by a variable: nginx reads it at each handshake, so a
    # new certificate is served without a reload
    variable = "$edge_proxy_melk_ai_certificate"
    assert f"map $ssl_server_name {variable} {{\n    default {FILES['certificate']};\n}}" in text
    assert f"ssl_certificate {variable};" in https
    assert f"ssl_certificate_key {variable};" in https
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in https
    assert "location / {\n        proxy_pass http://melk-ai-front;" in https
    assert "X-Forwarded-Proto $scheme" in https
    assert "Strict-Transport-Security" not in https
    assert https.endswith("    }\n}")
    # maintenance mode covers both servers (a file nginx tests per request)
    include = "include /etc/nginx/edge-proxy/melk-ai.maintenance.conf;"
    assert include in http and include in https


def test_names_port_and_hsts() -> None:
    http, https = servers(
        render(
            __edge_proxy_tls_mode="supplied",
            __edge_proxy_tls_files=FILES,
            edge_proxy_server_names=["a.example.com", "b.example.com"],
            edge_proxy_tls_port=8443,
            edge_proxy_hsts_seconds=300,
        )
    )
    assert "return 301 https://$host:8443$request_uri;" in http
    assert "listen 8443 ssl;" in https
    assert "server_name a.example.com b.example.com;" in https
    assert 'add_header Strict-Transport-Security "max-age=300" always;' in https


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/healthz?full=1", 'location = "/healthz" {'),
        ('/he"al\\th', 'location = "/he\\"al\\\\th" {'),
    ],
)
def test_health_path_is_one_quoted_nginx_string(path: str, location: str) -> None:
    http, _ = servers(
        render(
            __edge_proxy_tls_mode="supplied",
            __edge_proxy_tls_files=FILES,
            edge_proxy_health_path=path,
        )
    )
    assert location in http


def test_acme_serves_its_challenge_before_and_after_the_certificate() -> None:
    (before,) = servers(render(__edge_proxy_tls_mode="acme", __edge_proxy_tls_files={}))
    challenge = "location ^~ /.well-known/acme-challenge/ {\n        root /var/lib/edge-proxy/acme;"
    assert challenge in before
    assert "location / {\n        proxy_pass" in before
    http, https = servers(render(__edge_proxy_tls_mode="acme", __edge_proxy_tls_files=FILES))
    assert challenge in http
    assert "return 301" in http
    assert "acme-challenge" not in https


@pytest.mark.parametrize(
    ("app", "variable"),
    [("melk-ai", "$edge_proxy_melk_ai_certificate"), ("admin", "$edge_proxy_admin_certificate")],
)
def test_each_app_names_its_certificate_with_a_variable_of_its_own(app: str, variable: str) -> None:
    """nginx variable names take no hyphen; app names take no underscore, so two apps
    never share one."""
    files = {"certificate": f"/etc/nginx/tls/{app}.pem", "key": f"/etc/nginx/tls/{app}.pem"}
    text = render(
        edge_proxy_app_name=app, __edge_proxy_tls_mode="supplied", __edge_proxy_tls_files=files
    )
    assert f"map $ssl_server_name {variable} {{\n    default {files['certificate']};\n}}" in text
    assert f"    ssl_certificate {variable};\n    ssl_certificate_key {variable};\n" in text


@pytest.mark.parametrize(
    ("app", "name"), [("melk-ai", "edge_proxy_melk_ai"), ("admin", "edge_proxy_admin")]
)
def test_every_server_of_an_app_logs_its_timings_to_the_apps_access_log(
    app: str, name: str
) -> None:
    """One log format per app (nginx refuses a name defined twice, and several apps share
    a host): when, how long, and towards the app the address, connect and response time."""
    files = {"certificate": f"/etc/nginx/tls/{app}.pem", "key": f"/etc/nginx/tls/{app}.pem"}
    text = render(
        edge_proxy_app_name=app, __edge_proxy_tls_mode="supplied", __edge_proxy_tls_files=files
    )
    assert text.count(f"log_format {name} ") == 1
    fields = re.search(rf"log_format {name} (.*?);\n", text, flags=re.S)
    assert fields is not None
    for field in (
        "msec=$msec",
        "request_time=$request_time",
        "upstream=$upstream_addr",
        "upstream_connect=$upstream_connect_time",
        "upstream_response=$upstream_response_time",
    ):
        assert field in fields.group(1)
    line = f"    access_log /var/log/nginx/{app}.access.log {name} buffer=64k flush=1s;\n"
    assert [line in server for server in servers(text)] == [True, True]
