"""What a run is told: the target hosts from DEPLOY_* variables, the extra vars
(sha, app_image, app_env, the registry login) and the environment handed to Ansible. Pure
functions: nothing here reads os.environ or touches a file.

Hosts, when both an inventory and DEPLOY_HOST are given (the fill-in rule): the
inventory's hosts must all be placeholders (none at all, or names under the
reserved example domains: example.com/.net/.org, .example, .invalid, .test,
.localhost); the DEPLOY_HOST hosts then take their place, in every group the
inventory defines, reached as DEPLOY_USER on DEPLOY_PORT. An inventory that names
real hosts and a DEPLOY_HOST both set are refused: one source of hosts. Each
DEPLOY_HOST host is named deploy-host-N in the run (its address is ansible_host),
so that the summary and the artifacts never show the secret's value.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

# An unset GitHub secret arrives as an empty string: treat it as unset.
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")

# Variables cdrunner itself consumes; none of them is needed by Ansible.
CONSUMED = frozenset(
    {
        "DEPLOY_HOST",
        "DEPLOY_USER",
        "DEPLOY_PORT",
        "DEPLOY_SSH_KEY",
        "DEPLOY_KNOWN_HOSTS",
        "DEPLOY_INSECURE_SKIP_HOST_KEY_CHECK",
        "APP_IMAGE",
        "APP_IMAGE_DEFAULT",
        "APP_ENV_JSON",
        "APP_REGISTRY_USERNAME",
        "APP_REGISTRY_PASSWORD",
        "SLACK_WEBHOOK",
        "ANSIBLE_VAULT_PASSWORD",
    }
)
# RFC 2606 / RFC 6761 names: a host under them is a placeholder, never a server
# (a suffix with a dot: names under that top-level domain; without: that domain
# and the names under it).
PLACEHOLDER_SUFFIXES = (
    ".example",
    ".invalid",
    ".test",
    ".localhost",
    "example.com",
    "example.net",
    "example.org",
)
# Host names and addresses shorter than this are not masked (they would mask
# ordinary words); an IPv4 address is at least 7 characters.
MIN_MASKED = 6
_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW|PRIVATE|WEBHOOK|CREDENTIAL|API_?KEY|ACCESS_KEY|_KEY$|^KEY$",
    re.IGNORECASE,
)
_REFERENCE_NAME = re.compile(r"_(FILE|PATH|DIR)$", re.IGNORECASE)


class InputError(ValueError):
    """Bad input, refused before any host is contacted (exit code 2)."""


@dataclass(frozen=True)
class Target:
    """Where to deploy, from DEPLOY_* variables."""

    hosts: tuple[str, ...]
    user: str
    port: int
    ssh_key: str | None
    known_hosts: str | None
    insecure: bool


def setting(env: Mapping[str, str], name: str) -> str | None:
    """An environment setting, stripped; None when unset or empty."""
    value = env.get(name, "").strip()
    return value or None


def parse_hosts(raw: str) -> tuple[str, ...]:
    """DEPLOY_HOST: one or more host names or addresses, comma-separated."""
    hosts = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not hosts:
        raise InputError("DEPLOY_HOST names no host")
    for host in hosts:
        if not (_HOSTNAME.match(host) or (":" in host and _IPV6.match(host))):
            raise InputError(f"DEPLOY_HOST: {host!r} is not a host name or an IP address")
    if len(set(hosts)) != len(hosts):
        raise InputError("DEPLOY_HOST names a host twice")
    return hosts


def parse_port(raw: str | None) -> int:
    """DEPLOY_PORT: 1-65535, default 22."""
    if raw is None:
        return 22
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise InputError(f"DEPLOY_PORT must be a port number (1-65535), not {raw!r}")
    return int(raw)


def parse_user(raw: str | None) -> str:
    if raw is None:
        raise InputError("DEPLOY_USER is not set (the SSH user that deploys)")
    if not _USER.match(raw):
        raise InputError(f"DEPLOY_USER: {raw!r} is not a valid user name")
    return raw


def normalize_key(text: str) -> str:
    """A private key as OpenSSH reads it: LF line ends and a final newline
    (secrets stores often lose the last newline, and ssh then rejects the key)."""
    return "\n".join(line.rstrip("\r") for line in text.strip().splitlines()) + "\n"


def is_true(raw: str | None) -> bool:
    return (raw or "").lower() in TRUE_WORDS


def target_from_env(env: Mapping[str, str]) -> Target:
    """The target hosts from DEPLOY_*; raises InputError with what is wrong."""
    raw_hosts = setting(env, "DEPLOY_HOST")
    if raw_hosts is None:
        raise InputError("no --inventory given and DEPLOY_HOST is not set")
    hosts = parse_hosts(raw_hosts)
    user = parse_user(setting(env, "DEPLOY_USER"))
    port = parse_port(setting(env, "DEPLOY_PORT"))
    key = setting(env, "DEPLOY_SSH_KEY")
    known_hosts = setting(env, "DEPLOY_KNOWN_HOSTS")
    insecure = is_true(setting(env, "DEPLOY_INSECURE_SKIP_HOST_KEY_CHECK"))
    if known_hosts is None and not insecure:
        raise InputError(
            "DEPLOY_KNOWN_HOSTS is not set: host keys are checked, so give the servers' "
            "known_hosts lines (ssh-keyscan -p PORT HOST). To connect without checking "
            "them (not recommended), set DEPLOY_INSECURE_SKIP_HOST_KEY_CHECK=true."
        )
    return Target(
        hosts=hosts,
        user=user,
        port=port,
        ssh_key=normalize_key(key) if key else None,
        known_hosts=known_hosts.strip() + "\n" if known_hosts else None,
        insecure=insecure and known_hosts is None,
    )


def ssh_common_args(known_hosts_file: Path | None, with_key: bool, insecure: bool = True) -> str:
    """ssh_common_args: strict host key checking against our own file; without
    one, against the user's known_hosts, or (insecure) none."""
    if known_hosts_file is None and not insecure:
        args = ["-o", "StrictHostKeyChecking=yes"]
    elif known_hosts_file is None:
        args = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    else:
        args = [
            "-o",
            f"UserKnownHostsFile={known_hosts_file}",
            "-o",
            "StrictHostKeyChecking=yes",
        ]
    if with_key:
        args += ["-o", "IdentitiesOnly=yes"]
    return shlex.join(args)


def alias(index: int) -> str:
    """The inventory name of the index-th (from 1) DEPLOY_HOST host."""
    return f"deploy-host-{index}"


def is_placeholder(host: str) -> bool:
    """A host name of the reserved example domains (the shipped inventory's)."""
    name = host.lower().rstrip(".")
    return any(
        name.endswith(suffix)
        if suffix.startswith(".")
        else name.endswith(f".{suffix}") or name == suffix
        for suffix in PLACEHOLDER_SUFFIXES
    )


def placeholders(hosts: Mapping[str, object], deploy_host_set: bool) -> tuple[str, ...]:
    """The inventory's hosts the DEPLOY_HOST hosts replace (the fill-in rule);
    InputError when both name real hosts. The message counts, never names, them."""
    if not deploy_host_set:
        return ()
    real = [h for h in hosts if not is_placeholder(h)]
    if real:
        raise InputError(
            f"DEPLOY_HOST is set and the inventory names {len(real)} host(s) that are not "
            "placeholders (example.com, .example, .invalid, .test): give the hosts in one "
            "place, the inventory or DEPLOY_HOST"
        )
    return tuple(sorted(hosts))


def inventory_for(target: Target, groups: Sequence[str] = ()) -> dict[str, object]:
    """An Ansible inventory (dump as JSON) for the target: each host as
    deploy-host-N with its address in ansible_host, also in each of groups.
    The key and known_hosts reach SSH through the environment (ssh_env)."""
    hosts = {
        alias(n): {"ansible_host": host, "ansible_user": target.user, "ansible_port": target.port}
        for n, host in enumerate(target.hosts, start=1)
    }
    inventory: dict[str, object] = {"all": {"hosts": hosts}}
    for group in groups:
        if group not in ("all", "ungrouped"):
            inventory[group] = {"hosts": {name: {} for name in hosts}}
    return inventory


def ssh_env(
    key_file: Path | None, known_hosts_file: Path | None, insecure: bool, control_dir: Path
) -> dict[str, str]:
    """Connection settings as Ansible configuration (environment), the lowest
    precedence: what an inventory sets for a host wins, as on a laptop. SSH
    control sockets go to control_dir (removed after the run)."""
    env = {
        "ANSIBLE_SSH_COMMON_ARGS": ssh_common_args(
            known_hosts_file, key_file is not None, insecure
        ),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
    }
    if key_file is not None:
        env["ANSIBLE_PRIVATE_KEY_FILE"] = str(key_file)
    return env


def limit_for(limit: str | None, excluded: Sequence[str]) -> str | None:
    """--limit with the placeholder hosts taken out."""
    if not excluded:
        return limit
    return ":".join([limit or "all", *(f"!{host}" for host in excluded)])


def parse_app_env(raw: str | None) -> dict[str, str] | None:
    """APP_ENV_JSON: a JSON object of the app's environment (secrets)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        # The text is a secret: say where it breaks, never what it holds.
        raise InputError(
            f"APP_ENV_JSON is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(value, dict):
        raise InputError("APP_ENV_JSON must be a JSON object of NAME: value")
    bad = sorted(k for k, v in value.items() if not isinstance(v, str | int | float | bool))
    if bad:
        raise InputError(f"APP_ENV_JSON: the values of {', '.join(bad)} must be strings")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


@dataclass(frozen=True)
class RegistryLogin:
    """APP_REGISTRY_USERNAME / APP_REGISTRY_PASSWORD, passed on as app_registry_username /
    app_registry_password when set (deploy.yml refuses one without the other)."""

    username: str | None = None
    password: str | None = None


def registry_login_from_env(env: Mapping[str, str]) -> RegistryLogin:
    """The registry login from the environment. The password is taken byte for byte (a
    token may end in whitespace); only an empty one counts as unset."""
    return RegistryLogin(
        setting(env, "APP_REGISTRY_USERNAME"), env.get("APP_REGISTRY_PASSWORD") or None
    )


def extra_vars(
    sha: str | None,
    app_image: str | None,
    app_env: Mapping[str, str] | None,
    login: RegistryLogin | None = None,
) -> dict[str, object]:
    """The run's extra vars; written to a file in the private data dir only."""
    result: dict[str, object] = {}
    if sha is not None:
        result["sha"] = sha
    if app_image is not None:
        result["app_image"] = app_image
    if app_env is not None:
        result["app_env"] = dict(app_env)
    if login is not None and login.username is not None:
        result["app_registry_username"] = login.username
    if login is not None and login.password is not None:
        result["app_registry_password"] = login.password
    return result


def extravars_text(variables: Mapping[str, object]) -> str:
    """The extra vars file ansible-runner passes as -e @FILE: one YAML mapping
    tagged !unsafe, so what the CD job passes (sha, app_image, app_env values)
    is taken literally and never templated; a sha that is a template is refused
    as bad input and runs nothing. The tag is on the mapping, not on each
    string: Ansible re-resolves a tagged scalar as if plain ('123' -> 123)."""
    return "--- !unsafe\n" + str(yaml.safe_dump(dict(variables), sort_keys=True))


def is_secret_name(name: str) -> bool:
    """Whether an environment variable must not reach Ansible (ansible-runner
    writes the whole environment of the run into the artifact 'command')."""
    if name in CONSUMED:
        return True
    return bool(_SECRET_NAME.search(name)) and not _REFERENCE_NAME.search(name)


def runner_env(
    base: Mapping[str, str], bin_dir: Path, ansible_cfg: Path, check_host_keys: bool
) -> dict[str, str]:
    """The environment of the ansible-playbook process: the caller's, without
    secrets, with the repository's ansible.cfg and host key checking set
    explicitly (ansible-runner turns it off unless told)."""
    env = {k: v for k, v in base.items() if not is_secret_name(k)}
    path = env.get("PATH", "")
    if str(bin_dir) not in path.split(":"):
        env["PATH"] = f"{bin_dir}:{path}" if path else str(bin_dir)
    env.update(
        ANSIBLE_CONFIG=str(ansible_cfg),
        ANSIBLE_HOST_KEY_CHECKING=str(check_host_keys),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
    )
    return env


def secret_values(
    target: Target | None,
    app_env: Mapping[str, str] | None,
    webhook: str | None,
    registry_password: str | None = None,
    vault_password: str | None = None,
) -> list[str]:
    """Values that must never be printed nor kept: app_env values, the SSH key's
    body lines, the Slack webhook, the registry password and the vault password.
    Short values are left out (they would mask ordinary words), except the vault
    password."""
    values: list[str] = [vault_password] if vault_password else []
    if app_env:
        values += [v for v in app_env.values() if len(v) >= 6]
    if registry_password and len(registry_password) >= 6:
        values.append(registry_password)
    if target is not None and target.ssh_key:
        values += [
            line.strip()
            for line in target.ssh_key.splitlines()
            if len(line.strip()) >= 16 and not line.startswith("-----")
        ]
    if webhook:
        values.append(webhook)
    return sorted(set(values), key=len, reverse=True)


def known_secrets(env: Mapping[str, str], webhook: str | None) -> list[str]:
    """secret_values from the raw environment, never raising: for masking
    what is printed even when the inputs are refused."""
    try:
        app_env = parse_app_env(setting(env, "APP_ENV_JSON"))
    except InputError:
        app_env = None
    key = setting(env, "DEPLOY_SSH_KEY")
    target = Target((), "", 22, normalize_key(key), None, False) if key else None
    vault = env.get("ANSIBLE_VAULT_PASSWORD") or None
    registry_password = registry_login_from_env(env).password
    return secret_values(target, app_env, webhook, registry_password, vault) + private_values(env)


def private_values(env: Mapping[str, str]) -> list[str]:
    """Values masked, without a warning, wherever they appear: the DEPLOY_HOST
    names and addresses (the run calls them deploy-host-N)."""
    hosts = [h.strip() for h in (setting(env, "DEPLOY_HOST") or "").split(",")]
    return sorted({h for h in hosts if len(h) >= MIN_MASKED}, key=len, reverse=True)
