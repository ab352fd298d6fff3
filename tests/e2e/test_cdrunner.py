"""The CD entry point end to end (issues 5 and 14): ``python -m cdrunner`` as the
CD workflow runs it, over real SSH with host key checking, inventory built from
DEPLOY_* variables, secrets from APP_ENV_JSON and DEPLOY_SSH_KEY; then with an
inventory directory like inventories/production (placeholder host filled in from
DEPLOY_HOST, group_vars/all/ with a vault file opened by ANSIBLE_VAULT_PASSWORD).

The tests run in file order against the bed's server: refusals first (nothing
is touched), then a deploy of v2, a deploy of a release that never gets healthy
(rolled back), a refused sha, a deploy with the inventory's settings (another
port and health path, a vaulted secret, an !unsafe value), a deploy with a
literal APP_ENV_JSON value (back to the bed's settings), and last the search of
every artifact and every output for the secrets.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testbed import ROOT, app, servers
from testbed.bed import Bed, playbook_env

pytestmark = pytest.mark.e2e

CD_SENTINEL = "cd-s3ntinel-VALUE-91b2e4"  # APP_ENV_JSON secret that must never show up
VAULT_SENTINEL = "vault-s3ntinel-VALUE-5c0d17"  # app_env secret from the inventory's vault
VAULT_PASSWORD = "vault-pass-e2e-3f9a"
HOST = "127.0.0.1"  # DEPLOY_HOST: its address, never shown
ALIAS = "deploy-host-1"  # the name cdrunner gives it
# Must arrive in the container byte for byte: nothing of it templated or expanded.
LITERAL = "p{{ 7*7 }}q{%r#}s$HOME'\"\\"


@dataclass
class CdRun:
    rc: int
    output: str
    summary: str


@dataclass
class Cd:
    bed: Bed
    work: Path
    env: dict[str, str]
    extra_vars: Path
    runs: list[CdRun] = field(default_factory=list)

    @property
    def artifacts(self) -> Path:
        return self.work / "artifacts"

    def run(self, *args: str, **env: str) -> CdRun:
        summary = self.work / f"summary-{len(self.runs)}.md"
        # A fresh SSH control dir: no master connection of an earlier run
        # (opened without host key checking) is reused.
        control = tempfile.mkdtemp(prefix="cdcp-")
        result = subprocess.run(
            [
                str(ROOT / ".venv" / "bin" / "python"),
                "-m",
                "cdrunner",
                *args,
                "--artifacts-dir",
                str(self.artifacts),
                "--extra-vars-file",
                str(self.extra_vars),
            ],
            cwd=ROOT,
            env={
                **self.env,
                "GITHUB_STEP_SUMMARY": str(summary),
                "ANSIBLE_SSH_CONTROL_PATH_DIR": control,
                **env,
            },
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        output = result.stdout + result.stderr
        print(f"\n$ python -m cdrunner {' '.join(args)} -> {result.returncode}\n{output}")
        run = CdRun(result.returncode, output, summary.read_text() if summary.exists() else "")
        self.runs.append(run)
        return run

    def current(self) -> str | None:
        current = self.bed.state().get("current")
        return str(current["sha"]) if isinstance(current, dict) else None


def keyscan(port: int) -> str:
    result = subprocess.run(
        ["ssh-keyscan", "-p", str(port), HOST], capture_output=True, text=True, timeout=30
    )
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    assert lines, f"ssh-keyscan found no host key: {result.stderr}"
    return "\n".join(lines) + "\n"


def foreign_known_hosts(port: int, work: Path) -> str:
    """A known_hosts line for the server's address with some other key."""
    key = work / "not-the-server"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, body = key.with_suffix(".pub").read_text().split()[:2]
    return f"[{HOST}]:{port} {kind} {body}\n"


def key_body_lines() -> list[str]:
    text = servers.ssh_key().read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("-----")]


@pytest.fixture(scope="module")
def cd(bed: Bed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cd]:
    work = tmp_path_factory.mktemp("cdrunner")
    group_vars = json.loads(bed.inventory.read_text())["all"]["vars"]
    # The bed's other group vars (app_verify_seconds, docker_daemon_options)
    # through --extra-vars-file; app_image and app_env come from the variables.
    extra = {k: v for k, v in group_vars.items() if k not in {"app_image", "app_env"}}
    extra_vars = work / "bed-vars.json"
    extra_vars.write_text(json.dumps(extra))
    env = playbook_env()
    env.update(
        DEPLOY_HOST=HOST,
        DEPLOY_PORT=str(bed.server.ssh_port),
        DEPLOY_USER="deploy",
        DEPLOY_SSH_KEY=servers.ssh_key().read_text(),
        DEPLOY_KNOWN_HOSTS=keyscan(bed.server.ssh_port),
        APP_IMAGE=app.pull_repository(),
        APP_ENV_JSON=json.dumps({"APP_SECRET_TOKEN": CD_SENTINEL, "APP_GREETING": "hello"}),
    )
    env.pop("GITHUB_ACTIONS", None)
    yield Cd(bed, work, env, extra_vars)


def test_missing_known_hosts_is_refused(cd: Cd) -> None:
    before = cd.bed.sh("ls -la --time-style=full-iso /opt/melk-ai")
    run = cd.run("deploy", "--sha", cd.bed.releases["v2"], DEPLOY_KNOWN_HOSTS="")
    assert run.rc == 2, run.output
    assert "DEPLOY_KNOWN_HOSTS is not set" in run.summary
    assert cd.bed.sh("ls -la --time-style=full-iso /opt/melk-ai") == before


def test_a_host_key_that_does_not_match_is_unreachable(cd: Cd) -> None:
    before = cd.current()
    known = foreign_known_hosts(cd.bed.server.ssh_port, cd.work)
    run = cd.run("deploy", "--sha", cd.bed.releases["v2"], DEPLOY_KNOWN_HOSTS=known)
    assert run.rc == 3, run.output
    assert f"| {ALIAS} | unreachable |" in run.summary
    assert "Host key verification failed" in run.output
    assert cd.current() == before


def test_deploy_v2(cd: Cd) -> None:
    v2 = cd.bed.releases["v2"]
    before = cd.current()
    run = cd.run("deploy", "--sha", v2)
    assert run.rc == 0, run.output
    result = "noop" if before == v2 else "succeeded"
    before_cell = f"`{before[:12]}`" if before else "—"
    row = f"| {ALIAS} | {result} | {before_cell} | `{v2[:12]}` | healthy |"
    assert row in run.summary, run.summary
    assert run.summary.startswith(f"### Deploy of `{v2[:12]}`: succeeded")
    assert "app_deploy : Start the new release in slot" in run.output or result == "noop"
    assert cd.bed.served_version() == "v2"


def test_release_that_never_gets_healthy_is_rolled_back(cd: Cd) -> None:
    v2, bad = cd.bed.releases["v2"], cd.bed.releases["unhealthy"]
    run = cd.run("deploy", "--sha", bad)
    assert run.rc == 1, run.output
    assert f"### Deploy of `{bad[:12]}`: failed, rolled back" in run.summary
    assert f"| {ALIAS} | failed | `{v2[:12]}` | `{v2[:12]}` | unhealthy |" in run.summary
    assert run.summary.splitlines()[4].endswith("| yes |")
    assert "health check failed" in run.summary
    assert cd.bed.served_version() == "v2"
    assert cd.current() == v2


def test_bad_sha_is_refused(cd: Cd) -> None:
    before = cd.bed.sh("ls -la --time-style=full-iso /opt/melk-ai")
    run = cd.run("deploy", "--sha", "abc; rm")
    assert run.rc == 2, run.output
    assert f"| {ALIAS} | refused |" in run.summary
    assert "Refused before any host was touched" in run.summary
    assert cd.bed.sh("ls -la --time-style=full-iso /opt/melk-ai") == before


def production_like_inventory(cd: Cd) -> Path:
    """inventories/production's shape: the placeholder host, group_vars/all/ a
    directory with main.yml (a port and a health path that are not the defaults,
    app_env from the vault, an !unsafe value) and vault.yml (encrypted)."""
    inventory = cd.work / "production"
    group_vars = inventory / "group_vars" / "all"
    group_vars.mkdir(parents=True)
    production = ROOT / "inventories" / "production" / "hosts.yml"
    (inventory / "hosts.yml").write_text(production.read_text())
    unsafe = "'" + LITERAL.replace("'", "''") + "'"  # YAML single-quoted
    (group_vars / "main.yml").write_text(
        f"app_image: {app.pull_repository()}\n"
        "app_port: 9000\n"
        "app_health_path: /ready\n"
        "app_env:\n"
        '  PORT: "9000"\n'
        "  APP_HEALTH_PATH: /ready\n"
        '  APP_SECRET_TOKEN: "{{ vault_app_secret_token }}"\n'
        f"  APP_LITERAL: !unsafe {unsafe}\n"
        '  APP_LITERAL_FROM_VAULT: "{{ vault_app_literal }}"\n'
    )
    vault = group_vars / "vault.yml"
    vault.write_text(
        f"vault_app_secret_token: {VAULT_SENTINEL}\nvault_app_literal: !unsafe {unsafe}\n"
    )
    password_file = cd.work / "vault-password"
    password_file.write_text(VAULT_PASSWORD)
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-vault"), "encrypt", "--vault-password-file",
         str(password_file), str(vault)],
        check=True, capture_output=True,
    )  # fmt: skip
    password_file.unlink()
    assert VAULT_SENTINEL not in vault.read_text()
    return inventory


def sha256_line(value: str) -> str:
    return hashlib.sha256(f"{value}\n".encode()).hexdigest()


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # nosec B310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_inventorys_settings_and_vault_apply_in_cd(cd: Cd) -> None:
    """cdrunner --inventory DIR: app_port 9000 and app_health_path /ready from
    group_vars (the app listens and answers health there only because app_env,
    from the vault, tells it to), the placeholder host filled in from DEPLOY_HOST."""
    inventory = production_like_inventory(cd)
    v3 = cd.bed.releases["v3"]
    run = cd.run(
        "deploy", "--sha", v3, "--inventory", str(inventory),
        APP_ENV_JSON="", APP_IMAGE="", ANSIBLE_VAULT_PASSWORD=VAULT_PASSWORD,
    )  # fmt: skip
    assert run.rc == 0, run.output
    assert f"| {ALIAS} | succeeded |" in run.summary
    assert "app1.example.com" not in run.summary
    assert cd.bed.served_version() == "v3"
    assert status_of(f"{cd.bed.server.url}/ready") == 200
    assert status_of(f"{cd.bed.server.url}/health") == 404, "/health is not the health path"
    assert cd.bed.release_env_sha256("PORT") == sha256_line("9000")
    assert cd.bed.release_env_sha256("APP_SECRET_TOKEN") == sha256_line(VAULT_SENTINEL)
    assert cd.bed.release_env_sha256("APP_LITERAL") == sha256_line(LITERAL)
    assert cd.bed.release_env_sha256("APP_LITERAL_FROM_VAULT") == sha256_line(LITERAL)
    published = cd.bed.sh("docker ps --format '{{.Ports}}' --filter name=melk-ai-")
    assert "->9000/tcp" in published


def test_app_env_json_is_taken_literally(cd: Cd) -> None:
    """APP_ENV_JSON (the bed's own app_env, the default port and health path
    again) with a value full of template and shell syntax."""
    v2 = cd.bed.releases["v2"]
    app_env = {"APP_SECRET_TOKEN": CD_SENTINEL, "APP_GREETING": "hello", "APP_LITERAL": LITERAL}
    run = cd.run("deploy", "--sha", v2, APP_ENV_JSON=json.dumps(app_env))
    assert run.rc == 0, run.output
    assert cd.bed.served_version() == "v2"
    assert cd.bed.release_env_sha256("APP_LITERAL") == sha256_line(LITERAL)
    assert cd.bed.release_env_sha256("APP_SECRET_TOKEN") == sha256_line(CD_SENTINEL)
    assert cd.bed.release_env_sha256("PORT") == sha256_line("8000")


def test_no_secret_in_artifacts_or_output(cd: Cd) -> None:
    assert len(cd.runs) >= 4, "runs after the others in this module"
    secrets = [CD_SENTINEL, VAULT_SENTINEL, VAULT_PASSWORD, *key_body_lines()]
    files = [p for p in cd.artifacts.rglob("*") if p.is_file()]
    assert any(p.name == "command" for p in files) and any("job_events" in p.parts for p in files)
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        for secret in secrets:
            assert secret not in text, f"a secret in {path}"
        assert HOST not in text, f"the DEPLOY_HOST address in {path}"
    for run in cd.runs:
        # cdrunner masks a leaked value and warns: the warning means a leak at the source
        assert "secret values were found" not in run.output
        for secret in secrets:
            assert secret not in run.output and secret not in run.summary
        assert HOST not in run.summary
    # the secret did reach the app (so the checks above are not vacuous)
    assert CD_SENTINEL in cd.bed.sh("cat /opt/melk-ai/app.env")


def ssh_masters(port: int) -> list[str]:
    """SSH control masters on this machine for the bed's host, port and user with
    their socket in a cdrunner private directory (ControlPersist would keep them
    120 s). A master shows as `ssh: <socket> [mux]`; Ansible names the socket
    after sha1("host-port-user")[:10]."""
    name = hashlib.sha1(f"{HOST}-{port}-deploy".encode(), usedforsecurity=False).hexdigest()[:10]
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [
        line
        for line in ps.stdout.splitlines()
        if line.startswith("ssh") and "cdrunner-" in line and f"/cp/{name}" in line
    ]


def test_no_ssh_master_outlives_a_run(cd: Cd) -> None:
    """cdrunner tells each control master to exit (ssh -O exit) before it
    removes the directory of their sockets."""
    assert cd.runs, "runs after the others in this module"
    assert ssh_masters(cd.bed.server.ssh_port) == []
