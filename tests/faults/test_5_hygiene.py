"""Secret hygiene and least privilege, after every run of the suite (killed runs
included). What tests/e2e already covers is referenced, not repeated:
ansible-runner artifacts and cdrunner's output (test_cdrunner.py::
test_no_secret_in_artifacts_or_output), the first deploy's env file and labels
(test_deploy.py::test_app_env_reaches_the_app_and_never_the_output)."""

from __future__ import annotations

import json
import subprocess

import pytest
from faultkit import APP_DIR, BECOME_AUDIT, Results

from testbed import ROOT
from testbed.bed import SENTINEL, Bed, playbook_env

pytestmark = pytest.mark.e2e

# Playbooks that deploy or roll back; provision.yml installs packages as root.
RELEASE_PLAYBOOKS = {"deploy.yml", "rollback.yml"}
# Where host key checking may be off: the test bed's throwaway servers
# (servers.py: their inventories and ssh_command), and cdrunner's explicit
# opt-out (it refuses without DEPLOY_KNOWN_HOSTS otherwise).
KEY_CHECKING_OFF_ALLOWED = {"testbed/servers.py", "cdrunner/inputs.py"}


def test_sentinel_secret_appears_nowhere(bed: Bed, results: Results) -> None:
    assert len(bed.outputs) >= 20, "runs after the other files of the suite"
    in_output = sum(SENTINEL in output for output in bed.outputs)
    logs = bed.sh(
        f"grep -rl '{SENTINEL}' /var/log /opt /etc /home /tmp --exclude=app.env 2>/dev/null;"
        f" journalctl --no-pager -q | grep -c '{SENTINEL}';"
        " for c in $(docker ps -aq); do docker logs $c 2>&1; done | grep -c"
        f" '{SENTINEL}'; true"
    ).split()
    labels = bed.sh("docker inspect --format '{{json .Config.Labels}}' $(docker ps -aq)")
    history = bed.sh(f"cat {APP_DIR}/releases.json")
    env_file = bed.sh(f"stat -c '%a %U' {APP_DIR}/app.env").strip()
    results.add(
        "secret: sentinel in app_env",
        "in no output, log, history or label; env file 0600",
        f"{in_output} of {len(bed.outputs)} outputs; host files/journal/container logs:"
        f" {' '.join(logs)}; in labels: {SENTINEL in labels}; in history:"
        f" {SENTINEL in history}; env file {env_file}",
    )
    assert in_output == 0
    assert logs == ["0", "0"], logs  # no file listed, no journal line, no container log
    assert "io.melk.sha" in labels and SENTINEL not in labels
    assert SENTINEL not in history
    assert env_file == "600 deploy"
    assert SENTINEL in bed.sh(f"cat {APP_DIR}/app.env"), "the secret did reach the host"


def test_no_ansible_log_file_is_written(results: Results) -> None:
    dump = ansible_tool("ansible-config", "dump", "--only-changed")
    results.add(
        "secret: Ansible log file",
        "none configured",
        f"DEFAULT_LOG_PATH set: {'DEFAULT_LOG_PATH' in dump}",
    )
    assert "DEFAULT_LOG_PATH" not in dump


def audit() -> list[dict[str, object]]:
    return [json.loads(line) for line in BECOME_AUDIT.read_text().splitlines() if line]


def test_deploy_user_is_not_root_and_sudo_is_only_for_the_proxy(bed: Bed, results: Results) -> None:
    inventory = json.loads(bed.inventory.read_text())
    users = {h["ansible_user"] for h in inventory["all"]["hosts"].values()}
    uid = bed.sh("id -u deploy").strip()
    owners = set(bed.sh(f"stat -c '%U' {APP_DIR} {APP_DIR}/*").split())
    entries = [e for e in audit() if e["playbook"] in RELEASE_PLAYBOOKS]
    sudo = [e for e in entries if e["become"]]
    roles = {str(e["role"]) for e in sudo}
    results.add(
        "least privilege: deploy user, sudo",
        "not root; sudo only in edge_proxy tasks; app files owned by the user",
        f"user {users} uid {uid}; {len(sudo)} of {len(entries)} task results of deploys used"
        f" sudo, roles {sorted(roles)}; owners of {APP_DIR}: {sorted(owners)}",
    )
    assert users == {"deploy"} and uid != "0"
    assert entries and sudo, "the audit saw the suite's deploys"
    assert roles == {"edge_proxy"}, roles
    assert owners == {"deploy"}


def tracked_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return listing.split()


def ansible_tool(name: str, *args: str) -> str:
    """The output of one of the venv's Ansible tools, run as the playbooks are."""
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / name), *args],
        cwd=ROOT,
        env=playbook_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def production_host_vars() -> dict[str, dict[str, object]]:
    """Every host's effective variables in the example production inventory."""
    listing = ansible_tool(
        "ansible-inventory", "-i", str(ROOT / "inventories" / "production" / "hosts.yml"), "--list"
    )
    hostvars: dict[str, dict[str, object]] = json.loads(listing)["_meta"]["hostvars"]
    return hostvars


def checking_turned_off(hostvars: dict[str, object]) -> bool:
    ssh_args = " ".join(
        str(hostvars.get(k, ""))
        for k in ("ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_ssh_args")
    )
    flag = str(hostvars.get("ansible_host_key_checking", True)).lower()
    return "StrictHostKeyChecking=no" in ssh_args or flag in {"false", "no", "0"}


def test_host_key_checking_is_on_except_in_test_inventories(bed: Bed, results: Results) -> None:
    dump = ansible_tool("ansible-config", "dump")
    checking = next(line for line in dump.splitlines() if line.startswith("HOST_KEY_CHECKING"))
    production = production_host_vars()
    off_in_production = sorted(h for h, v in production.items() if checking_turned_off(v))
    test_hosts = json.loads(bed.inventory.read_text())["all"]["hosts"]
    off_in_test = all(checking_turned_off(v) for v in test_hosts.values())
    turned_off = {
        name
        for name in tracked_files()
        if name.endswith((".py", ".yml", ".yaml", ".cfg", ".json", ".ini"))
        and not name.startswith(("tests/", "docs/"))
        and "StrictHostKeyChecking=no" in (ROOT / name).read_text(errors="replace")
    }
    results.add(
        "SSH host key checking",
        "on in ansible.cfg and the production inventory; off only in test inventories",
        f"ansible.cfg: {checking.split('=')[-1].strip()}; off for production hosts:"
        f" {off_in_production or 'none'} of {len(production)}; off in the test inventory:"
        f" {off_in_test}; files that turn it off: {sorted(turned_off)}",
    )
    assert checking.endswith("= True")
    assert production and off_in_production == []
    assert off_in_test, "the check above must see a test inventory's setting"
    assert turned_off <= KEY_CHECKING_OFF_ALLOWED, turned_off


def test_bandit_is_clean(results: Results) -> None:
    run = subprocess.run(
        [
            str(ROOT / ".venv/bin/bandit"),
            "-q",
            "-r",
            "action_plugins",
            "filter_plugins",
            "library",
            "roles/healthcheck/library",
            "roles/app_deploy/library",
            "roles/edge_proxy/library",
            "cdrunner",
            "testbed",
            "--severity-level",
            "medium",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    results.add("bandit (medium and above)", "no finding", f"exit {run.returncode}")
    assert run.returncode == 0, run.stdout + run.stderr
