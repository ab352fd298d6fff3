"""Operations and the dry run over real SSH (issue 16, items 4 and 5).

logs.yml and run.yml against the serving release; deploy.yml --check --diff and
rollback.yml --check print their plan, exit 0 and change nothing: the app's
containers (with their ids), releases.json, app.env, the proxy's upstream file
and nginx's workers are compared before and after. The tests run in file order
against one server: v1, then v2, serve first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from testbed.app import UPSTREAM
from testbed.bed import SENTINEL, Bed, Run

pytestmark = pytest.mark.e2e

APP_DIR = "/opt/melk-ai"
# What a dry run must leave as it was. A reload would replace nginx's workers;
# a lock taken and not released would show in the listing.
SNAPSHOT = (
    "docker ps -a --no-trunc --filter label=io.melk.app=melk-ai"
    " --format '{{.ID}} {{.Names}} {{.Image}} {{.State}}' | sort;"
    f" sha256sum {APP_DIR}/releases.json {APP_DIR}/app.env {UPSTREAM};"
    f" ls -la --time-style=full-iso {APP_DIR};"
    " pgrep -f '^nginx: worker' | sort"
)
ONEOFFS = "docker ps -a --filter label=io.melk.oneoff --format '{{.Names}}'"


def ok(run: Run) -> Run:
    assert run.rc == 0, run.output[-4000:]
    return run


def flat(run: Run) -> str:
    """The output with its whitespace runs as one space (the YAML callback wraps lines)."""
    return " ".join(run.output.split())


def test_v1_then_v2_serve(bed: Bed) -> None:
    ok(bed.playbook("deploy.yml", "-e", f"sha={bed.releases['v1']}"))
    ok(bed.playbook("deploy.yml", "-e", f"sha={bed.releases['v2']}"))
    assert bed.served_version() == "v2"


# --------------------------------------------------------------------------- logs.yml


def test_logs_show_the_apps_line_prefixed_with_the_host(bed: Bed) -> None:
    run = ok(bed.playbook("logs.yml", "-e", "lines=20", "-e", "since=1h"))
    host = bed.server.name
    # The sample app prints this line when it starts (app/server.py).
    logged = [
        line for line in run.output.splitlines() if "melk-ai sample v2 (ok) listening" in line
    ]
    assert logged, run.output[-3000:]
    assert all(f"{host} | " in line for line in logged), logged
    assert "sample v1" not in run.output  # the serving release's log, not the retired one's
    assert SENTINEL not in run.output


@pytest.mark.parametrize(
    ("extra", "named"),
    [("lines=0", "lines"), ("lines=ten", "lines"), ("since=yesterday", "since")],
)
def test_logs_refuse_bad_input_before_any_host_is_touched(bed: Bed, extra: str, named: str) -> None:
    run = bed.playbook("logs.yml", "-e", extra)
    assert run.rc != 0
    assert "Refused before any host was touched" in run.output
    assert f"{named} " in run.output.split("Refused before any host was touched", 1)[1]
    assert "Read the release history" not in run.output  # no task reached the host


# --------------------------------------------------------------------------- run.yml


def test_run_prints_the_output_and_fails_with_the_exit_code(bed: Bed) -> None:
    run = bed.playbook("run.yml", "-e", 'command=sh -c "echo hi-from-run; exit 3"')
    assert run.rc != 0
    assert "hi-from-run" in run.output, run.output[-3000:]
    assert "exit code 3" in run.output
    assert SENTINEL not in run.output
    assert bed.sh(ONEOFFS).strip() == ""  # the one-off container is gone
    assert bed.served_version() == "v2"


def test_run_has_the_releases_env_and_exits_0(bed: Bed) -> None:
    # The env file reaches the command (APP_GREETING=hello in the suite's app_env);
    # a list is passed as it is, without a shell.
    command = ["python3", "-c", "import os; print('greeting=' + os.environ['APP_GREETING'])"]
    run = ok(bed.playbook("run.yml", "-e", json.dumps({"command": command})))
    assert "greeting=hello" in run.output
    assert bed.sh(ONEOFFS).strip() == ""
    assert SENTINEL not in run.output


def test_run_refuses_a_command_that_is_a_template(bed: Bed, tmp_path: Path) -> None:
    marker = tmp_path / "templated"
    # Literal, as an inventory's !unsafe or the CD job passes it: refused, not run.
    extra = tmp_path / "extra.yml"
    extra.write_text(
        "command: !unsafe \"{{ lookup('ansible.builtin.pipe', 'touch " + str(marker) + "') }}\"\n"
    )
    run = bed.playbook("run.yml", "-e", f"@{extra}")
    assert run.rc != 0
    assert "holds a template" in run.output
    assert not marker.exists()
    assert "Run the command in a one-off container" not in run.output


# --------------------------------------------------------------------------- --check


def test_deploy_check_diff_prints_the_plan_and_changes_nothing(bed: Bed) -> None:
    before = bed.sh(SNAPSHOT)
    # A new release (v3, not on the host yet) and a changed app_env.
    app_env = {"APP_SECRET_TOKEN": SENTINEL, "APP_GREETING": "greeting-7c1d"}
    run = ok(
        bed.playbook(
            "deploy.yml",
            "--check",
            "--diff",
            "-e",
            json.dumps({"sha": bed.releases["v3"], "app_env": app_env}),
        )
    )
    assert bed.sh(SNAPSHOT) == before
    assert bed.served_version() == "v2"
    v2, v3 = bed.releases["v2"][:12], bed.releases["v3"][:12]
    text = flat(run)
    assert f"DRY RUN on {bed.server.name}" in text and "This deploy would:" in text, text[-3000:]
    assert f"start {v3} in slot" in text
    assert "image would be pulled" in text
    assert "login none (no app_registry_username given)" in text  # no credentials here
    assert "app.env would change" in text
    assert "edge settings as on the host, nothing to apply" in text
    assert re.search(
        rf"proxy switch from slot (blue|green) \({v2}\) to slot (blue|green) \({v3}\)", text
    )
    assert "greeting-7c1d" not in run.output and SENTINEL not in run.output


def test_rollback_check_prints_the_plan_and_changes_nothing(bed: Bed) -> None:
    before = bed.sh(SNAPSHOT)
    run = ok(bed.playbook("rollback.yml", "--check"))
    assert bed.sh(SNAPSHOT) == before
    assert bed.served_version() == "v2"
    v1, v2 = bed.releases["v1"][:12], bed.releases["v2"][:12]
    text = flat(run)
    assert f"DRY RUN on {bed.server.name}" in text and "This rollback would:" in text, text[-3000:]
    # v1 runs on as the standby since v2's deploy: the rollback is a switch to it
    assert f"use the standby {v1}, already running in slot" in text
    assert "image already on the host, no pull" in text
    assert "app.env unchanged" in text
    assert "edge not applied by a rollback" in text
    assert re.search(
        rf"proxy switch from slot (blue|green) \({v2}\) to slot (blue|green) \({v1}\)", text
    )
    assert SENTINEL not in run.output


def test_deploy_check_of_the_serving_release_says_nothing_to_do(bed: Bed) -> None:
    before = bed.sh(SNAPSHOT)
    run = ok(bed.playbook("deploy.yml", "--check", "-e", f"sha={bed.releases['v2']}"))
    assert bed.sh(SNAPSHOT) == before
    assert "already serves on this host" in flat(run) and "DRY RUN" not in run.output
