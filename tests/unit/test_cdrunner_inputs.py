"""cdrunner.inputs: the inventory from DEPLOY_*, extra vars, the Ansible environment."""

from __future__ import annotations

import json
import shlex
import string
import tempfile
from pathlib import Path

import pytest
from cdrunner_fakes import KEY, KNOWN, ansible_extra_vars, templatable_strings
from hypothesis import given
from hypothesis import strategies as st

from cdrunner.inputs import (
    InputError,
    RegistryLogin,
    extra_vars,
    extravars_text,
    inventory_for,
    is_placeholder,
    is_secret_name,
    known_secrets,
    limit_for,
    normalize_key,
    parse_app_env,
    parse_hosts,
    parse_port,
    parse_user,
    placeholders,
    private_values,
    registry_login_from_env,
    runner_env,
    secret_values,
    ssh_common_args,
    ssh_env,
    target_from_env,
)

BASE = {
    "DEPLOY_HOST": "10.0.0.5",
    "DEPLOY_USER": "deploy",
    "DEPLOY_PORT": "2222",
    "DEPLOY_SSH_KEY": KEY,
    "DEPLOY_KNOWN_HOSTS": KNOWN,
}


@pytest.mark.parametrize(
    ("raw", "hosts"),
    [
        ("app1.example.com", ("app1.example.com",)),
        ("10.0.0.1, 10.0.0.2", ("10.0.0.1", "10.0.0.2")),
        ("a,b,,c ,", ("a", "b", "c")),
        ("2001:db8::1", ("2001:db8::1",)),
        ("web-1.internal", ("web-1.internal",)),
    ],
)
def test_parse_hosts(raw: str, hosts: tuple[str, ...]) -> None:
    assert parse_hosts(raw) == hosts


@pytest.mark.parametrize(
    "raw",
    [" , ", "-oProxyCommand=x", "host name", "a;b", "web1,web1", "x" * 64, "bad_underscore"],
)
def test_parse_hosts_refuses(raw: str) -> None:
    with pytest.raises(InputError, match="DEPLOY_HOST"):
        parse_hosts(raw)


@given(
    st.lists(
        st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=20),
        min_size=1,
        max_size=5,
        unique=True,
    )
)
def test_parse_hosts_keeps_every_simple_name(names: list[str]) -> None:
    assert parse_hosts(" , ".join(names)) == tuple(names)


@pytest.mark.parametrize(
    ("raw", "port"), [(None, 22), ("22", 22), ("2222", 2222), ("65535", 65535)]
)
def test_parse_port(raw: str | None, port: int) -> None:
    assert parse_port(raw) == port


@pytest.mark.parametrize("raw", ["0", "65536", "ssh", "-1", "22 "])
def test_parse_port_refuses(raw: str) -> None:
    with pytest.raises(InputError, match="DEPLOY_PORT"):
        parse_port(raw)


@pytest.mark.parametrize("raw", [None, "Root", "a b", "-x", "u" * 40])
def test_parse_user_refuses(raw: str | None) -> None:
    with pytest.raises(InputError, match="DEPLOY_USER"):
        parse_user(raw)


def test_target_from_env() -> None:
    target = target_from_env(BASE)
    assert target.hosts == ("10.0.0.5",)
    assert (target.user, target.port, target.insecure) == ("deploy", 2222, False)
    assert target.ssh_key is not None and target.ssh_key.endswith("-----\n")
    assert target.known_hosts == KNOWN + "\n"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DEPLOY_HOST": ""}, "DEPLOY_HOST is not set"),
        ({"DEPLOY_USER": ""}, "DEPLOY_USER is not set"),
        ({"DEPLOY_PORT": "ssh"}, "DEPLOY_PORT"),
        ({"DEPLOY_KNOWN_HOSTS": ""}, "DEPLOY_KNOWN_HOSTS is not set"),
        ({"DEPLOY_KNOWN_HOSTS": "  ", "DEPLOY_INSECURE_SKIP_HOST_KEY_CHECK": "no"}, "ssh-keyscan"),
    ],
)
def test_target_from_env_refuses(change: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        target_from_env({**BASE, **change})


@pytest.mark.parametrize("word", ["true", "TRUE", "1", "yes"])
def test_insecure_only_when_asked_and_no_known_hosts(word: str) -> None:
    env = {**BASE, "DEPLOY_KNOWN_HOSTS": "", "DEPLOY_INSECURE_SKIP_HOST_KEY_CHECK": word}
    assert target_from_env(env).insecure
    # known_hosts given: they are used, the insecure switch is moot
    assert not target_from_env({**env, "DEPLOY_KNOWN_HOSTS": KNOWN}).insecure


def test_empty_port_and_key_mean_defaults() -> None:
    target = target_from_env({**BASE, "DEPLOY_PORT": "", "DEPLOY_SSH_KEY": ""})
    assert (target.port, target.ssh_key) == (22, None)


@given(
    st.lists(
        st.text(alphabet=string.ascii_letters + string.digits + "+/=", min_size=1, max_size=70),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
)
def test_normalize_key_gives_lf_and_one_final_newline(
    lines: list[str], eol: str, final: bool
) -> None:
    text = eol.join(lines) + (eol if final else "")
    key = normalize_key(text)
    assert "\r" not in key
    assert key.endswith("\n") and not key.endswith("\n\n")
    assert key.splitlines() == lines


def test_ssh_common_args_check_host_keys() -> None:
    args = shlex.split(ssh_common_args(Path("/run/x/known_hosts"), with_key=True))
    assert args == [
        "-o", "UserKnownHostsFile=/run/x/known_hosts",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "IdentitiesOnly=yes",
    ]  # fmt: skip


def test_ssh_common_args_insecure() -> None:
    args = ssh_common_args(None, with_key=False)
    assert "StrictHostKeyChecking=no" in args and "IdentitiesOnly" not in args


def test_inventory_names_hosts_by_alias_and_joins_the_groups() -> None:
    target = target_from_env({**BASE, "DEPLOY_HOST": "10.0.0.5,web2.internal"})
    inventory = inventory_for(target, ("web", "all", "ungrouped"))
    user = {"ansible_user": "deploy", "ansible_port": 2222}
    assert inventory == {
        "all": {
            "hosts": {
                "deploy-host-1": {"ansible_host": "10.0.0.5", **user},
                "deploy-host-2": {"ansible_host": "web2.internal", **user},
            }
        },
        "web": {"hosts": {"deploy-host-1": {}, "deploy-host-2": {}}},
    }
    text = json.dumps(inventory)
    assert "PRIVATE KEY" not in text and "ssh-ed25519" not in text


def test_ssh_env_references_key_and_known_hosts_by_path() -> None:
    env = ssh_env(Path("/p/ssh/id"), Path("/p/ssh/known_hosts"), False, Path("/p/cp"))
    assert env == {
        "ANSIBLE_SSH_COMMON_ARGS": ssh_common_args(Path("/p/ssh/known_hosts"), True),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": "/p/cp",
        "ANSIBLE_PRIVATE_KEY_FILE": "/p/ssh/id",
    }


@pytest.mark.parametrize(
    ("insecure", "args"),
    [
        (False, ["-o", "StrictHostKeyChecking=yes"]),
        (True, ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]),
    ],
)
def test_ssh_env_without_key_or_known_hosts(insecure: bool, args: list[str]) -> None:
    env = ssh_env(None, None, insecure, Path("/p/cp"))
    assert "ANSIBLE_PRIVATE_KEY_FILE" not in env
    assert shlex.split(env["ANSIBLE_SSH_COMMON_ARGS"]) == args


@pytest.mark.parametrize(
    ("host", "placeholder"),
    [
        ("app1.example.com", True),
        ("example.com", True),
        ("web.EXAMPLE.org.", True),
        ("db.example", True),
        ("x.invalid", True),
        ("box.test", True),
        ("myexample.com", False),
        ("example.com.evil.net", False),
        ("10.0.0.5", False),
        ("web1", False),
        ("test", False),
    ],
)
def test_is_placeholder(host: str, placeholder: bool) -> None:
    assert is_placeholder(host) is placeholder


def test_placeholders_are_replaced_only_when_deploy_host_is_set() -> None:
    hosts = {"app2.example.com": None, "app1.example.com": None}
    assert placeholders(hosts, True) == ("app1.example.com", "app2.example.com")
    assert placeholders(hosts, False) == ()
    assert placeholders({}, True) == ()
    assert placeholders({"10.9.8.7": None, "secret-db.corp": None}, False) == ()


def test_real_hosts_and_deploy_host_are_refused_without_naming_them() -> None:
    with pytest.raises(InputError) as info:
        placeholders({"app1.example.com": None, "10.9.8.7": None, "secret-db.corp": None}, True)
    assert "2 host(s) that are not placeholders" in str(info.value)
    assert "10.9.8.7" not in str(info.value) and "secret-db" not in str(info.value)


@pytest.mark.parametrize(
    ("limit", "excluded", "result"),
    [
        (None, (), None),
        ("web", (), "web"),
        (None, ("a.example.com",), "all:!a.example.com"),
        ("web", ("a.example.com", "b.example.com"), "web:!a.example.com:!b.example.com"),
    ],
)
def test_limit_for(limit: str | None, excluded: tuple[str, ...], result: str | None) -> None:
    assert limit_for(limit, excluded) == result


def test_private_values_are_the_long_deploy_hosts() -> None:
    env = {"DEPLOY_HOST": "10.0.0.5, web1 ,app.internal.corp"}
    assert private_values(env) == ["app.internal.corp", "10.0.0.5"]
    assert private_values({}) == []


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (None, None),
        ("{}", {}),
        ('{"TOKEN": "s3cret", "N": 3, "ON": true}', {"TOKEN": "s3cret", "N": "3", "ON": "true"}),
    ],
)
def test_parse_app_env(raw: str | None, parsed: dict[str, str] | None) -> None:
    assert parse_app_env(raw) == parsed


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"TOKEN": "s3cret-value', "not valid JSON"),
        ('["s3cret-value"]', "must be a JSON object"),
        ('{"TOKEN": {"nested": "s3cret-value"}}', "TOKEN must be strings"),
    ],
)
def test_parse_app_env_refuses_without_echoing_the_secret(raw: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_app_env(raw)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("sha", "image", "env", "expected"),
    [
        (None, None, None, {}),
        ("abc1234", None, None, {"sha": "abc1234"}),
        (
            "abc1234",
            "r/app",
            {"A": "b"},
            {"sha": "abc1234", "app_image": "r/app", "app_env": {"A": "b"}},
        ),
    ],
)
def test_extra_vars(
    sha: str | None, image: str | None, env: dict[str, str] | None, expected: dict[str, object]
) -> None:
    assert extra_vars(sha, image, env) == expected


TEMPLATE = "{{ lookup('pipe', 'touch /tmp/melk-template-ran') }}"


def test_extravars_are_never_templated(tmp_path: Path) -> None:
    variables = extra_vars(TEMPLATE, "registry.test/x", {"APP_PASSWORD": "p{{ x }}{% raw %}"})
    loaded = ansible_extra_vars(extravars_text(variables), tmp_path)
    assert loaded == variables
    assert templatable_strings(loaded) == []
    assert templatable_strings(ansible_extra_vars(json.dumps(variables), tmp_path)) != [], (
        "positive control: plain JSON in an extra vars file is templated"
    )


_SOME_TEXT = st.text(max_size=40)  # any text Python can encode (no lone surrogates)


@given(
    sha=st.none() | _SOME_TEXT,
    image=st.none() | _SOME_TEXT,
    env=st.none()
    | st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True), _SOME_TEXT),
)
def test_extravars_keep_any_text_exactly(
    sha: str | None, image: str | None, env: dict[str, str] | None
) -> None:
    variables = extra_vars(sha, image, env)
    with tempfile.TemporaryDirectory() as directory:
        loaded = ansible_extra_vars(extravars_text(variables), Path(directory))
    assert loaded == variables
    assert templatable_strings(loaded) == []


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("DEPLOY_SSH_KEY", True),
        ("APP_ENV_JSON", True),
        ("SLACK_WEBHOOK", True),
        ("DEPLOY_HOST", True),  # consumed by cdrunner, of no use to Ansible
        ("GITHUB_TOKEN", True),
        ("ACTIONS_RUNTIME_TOKEN", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("OPENROUTER_API_KEY", True),
        ("DB_PASSWORD", True),
        ("ANSIBLE_VAULT_PASSWORD_FILE", False),
        ("SSH_AUTH_SOCK", False),
        ("PATH", False),
        ("HOME", False),
        ("GITHUB_ACTOR", False),
        ("ANSIBLE_SSH_CONTROL_PATH_DIR", False),
        ("KEYBOARD", False),
    ],
)
def test_is_secret_name(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_runner_env_drops_secrets_and_sets_ansible() -> None:
    base = {**BASE, "PATH": "/usr/bin", "HOME": "/root", "APP_ENV_JSON": '{"A": "x"}'}
    env = runner_env(base, Path("/venv/bin"), Path("/repo/ansible.cfg"), check_host_keys=True)
    assert not any(name.startswith("DEPLOY_") or name == "APP_ENV_JSON" for name in env)
    assert env["PATH"] == "/venv/bin:/usr/bin"
    assert env["HOME"] == "/root"
    assert env["ANSIBLE_CONFIG"] == "/repo/ansible.cfg"
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"


@pytest.mark.parametrize(("path", "expected"), [("", "/v/bin"), ("/v/bin:/bin", "/v/bin:/bin")])
def test_runner_env_path(path: str, expected: str) -> None:
    env = runner_env({"PATH": path}, Path("/v/bin"), Path("/a.cfg"), check_host_keys=False)
    assert env["PATH"] == expected
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "False"


def test_secret_values_cover_app_env_key_body_and_webhook() -> None:
    target = target_from_env(BASE)
    values = secret_values(target, {"TOKEN": "s3cret-value", "SHORT": "yes"}, "https://hooks/x")
    assert "s3cret-value" in values and "https://hooks/x" in values
    assert "yes" not in values  # too short to mask safely
    body = [line for line in KEY.splitlines() if not line.startswith("-----")]
    assert set(body) <= set(values)
    assert not any(v.startswith("-----") for v in values)
    assert values == sorted(values, key=len, reverse=True)


def test_the_vault_password_is_a_secret_whatever_its_length() -> None:
    assert secret_values(None, None, None, vault_password="pw") == ["pw"]
    assert secret_values(None, None, None, "pw") == []  # a short registry password is not
    assert "pw" in known_secrets({"ANSIBLE_VAULT_PASSWORD": "pw"}, None)
    assert is_secret_name("ANSIBLE_VAULT_PASSWORD")


@pytest.mark.parametrize("app_env_json", ['{"TOKEN": "s3cret-value"}', "not json s3cret-value"])
def test_known_secrets_never_raise(app_env_json: str) -> None:
    values = known_secrets({**BASE, "APP_ENV_JSON": app_env_json}, None)
    assert ("s3cret-value" in values) is app_env_json.startswith("{")
    assert any(len(v) > 40 for v in values)  # the key body


REGISTRY_PASSWORD = " ghp_{{ 7*7 }}{% raw %}$HOME'\"\\ "  # spaces kept: byte for byte


@pytest.mark.parametrize(
    ("env", "login"),
    [
        ({}, RegistryLogin(None, None)),
        ({"APP_REGISTRY_USERNAME": "", "APP_REGISTRY_PASSWORD": ""}, RegistryLogin(None, None)),
        (
            {"APP_REGISTRY_USERNAME": " ci-bot\n", "APP_REGISTRY_PASSWORD": REGISTRY_PASSWORD},
            RegistryLogin("ci-bot", REGISTRY_PASSWORD),
        ),
        ({"APP_REGISTRY_PASSWORD": REGISTRY_PASSWORD}, RegistryLogin(None, REGISTRY_PASSWORD)),
        ({"APP_REGISTRY_USERNAME": "ci-bot"}, RegistryLogin("ci-bot", None)),
    ],
)
def test_registry_login_from_env(env: dict[str, str], login: RegistryLogin) -> None:
    assert registry_login_from_env(env) == login


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        (None, {"sha": "abc1234"}),
        (RegistryLogin(None, None), {"sha": "abc1234"}),
        (
            RegistryLogin("ci-bot", REGISTRY_PASSWORD),
            {
                "sha": "abc1234",
                "app_registry_username": "ci-bot",
                "app_registry_password": REGISTRY_PASSWORD,
            },
        ),
        # half a pair is passed on as given: deploy.yml refuses it before any host
        (RegistryLogin(None, "x"), {"sha": "abc1234", "app_registry_password": "x"}),
        (RegistryLogin("ci-bot", None), {"sha": "abc1234", "app_registry_username": "ci-bot"}),
    ],
)
def test_extra_vars_pass_the_registry_login_on(
    login: RegistryLogin | None, expected: dict[str, object]
) -> None:
    assert extra_vars("abc1234", None, None, login) == expected


def test_the_registry_password_reaches_ansible_literally(tmp_path: Path) -> None:
    variables = extra_vars(None, None, None, RegistryLogin("ci-bot", REGISTRY_PASSWORD))
    loaded = ansible_extra_vars(extravars_text(variables), tmp_path)
    assert loaded["app_registry_password"] == REGISTRY_PASSWORD
    assert templatable_strings(loaded) == []


def test_the_registry_login_stays_out_of_ansibles_environment() -> None:
    base = {"APP_REGISTRY_USERNAME": "ci-bot", "APP_REGISTRY_PASSWORD": "x" * 20, "PATH": ""}
    env = runner_env(base, Path("/v/bin"), Path("/a.cfg"), check_host_keys=True)
    assert "APP_REGISTRY_USERNAME" not in env and "APP_REGISTRY_PASSWORD" not in env


@pytest.mark.parametrize(("password", "masked"), [("s3cret-token", True), ("short", False)])
def test_the_registry_password_is_masked(password: str, masked: bool) -> None:
    assert (password in secret_values(None, None, None, password)) is masked
    env = {**BASE, "APP_REGISTRY_PASSWORD": password}
    assert (password in known_secrets(env, None)) is masked
