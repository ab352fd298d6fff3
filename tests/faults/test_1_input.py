"""Bad input: each refused on the controller, before any host is touched, with a
message that names the variable. The runs are controller-only, so they run
concurrently; the host is compared before and after, and its SSH log shows
that no run logged in (and, as a control, that a run which does reach the
host shows up in the same count)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from faultkit import APP_DIR, Results

from testbed.app import UPSTREAM
from testbed.bed import Bed, Run

pytestmark = pytest.mark.e2e

MARKER = "/tmp/melk-fault-injected"  # a shell metacharacter case would create it

# label -> (variable named in the refusal, extra vars as JSON). sha is valid
# (v1) unless the case is about sha, so each case has exactly one bad input.
CASES: dict[str, tuple[str, dict[str, object]]] = {
    "sha too short (6)": ("sha", {"sha": "abc123"}),
    "sha upper case": ("sha", {"sha": "ABCDEF1234"}),
    "sha not hex": ("sha", {"sha": "ghijklm"}),
    "sha 41 characters": ("sha", {"sha": "a" * 41}),
    "sha with ; and a command": ("sha", {"sha": f"abc1234; touch {MARKER}"}),
    "sha with $(...)": ("sha", {"sha": f"$(touch {MARKER})"}),
    "sha with backquotes": ("sha", {"sha": f"`touch {MARKER}`"}),
    "app_name with a space": ("app_name", {"app_name": "melk ai"}),
    "app_name with a slash": ("app_name", {"app_name": "melk/ai"}),
    "app_port 0": ("app_port", {"app_port": 0}),
    "app_port 70000": ("app_port", {"app_port": 70000}),
    "app_health_path without /": ("app_health_path", {"app_health_path": "health"}),
    "app_env a list": ("app_env", {"app_env": ["APP_TOKEN=x"]}),
    "app_env a string": ("app_env", {"app_env": "APP_TOKEN=x"}),
    "app_env key with =": ("app_env", {"app_env": {"APP=TOKEN": "x"}}),
}

SNAPSHOT = (
    f"ls -la --time-style=full-iso {APP_DIR}; md5sum {APP_DIR}/* {UPSTREAM};"
    " docker ps -a --format '{{.ID}} {{.Names}} {{.State}}';"
    f" test -e {MARKER} && echo INJECTED || true"
)
SSH_LOGINS = "journalctl --no-pager -q -u ssh | grep -c 'Accepted publickey' || true"


def refused(bed: Bed, label: str, extra: dict[str, object]) -> tuple[str, Run]:
    values = {"sha": bed.releases["v1"], **extra}
    return label, bed.playbook("deploy.yml", "-e", json.dumps(values))


def test_bad_input_is_refused_before_any_host_is_touched(bed: Bed, results: Results) -> None:
    # A control directory of its own: a login would show in the SSH log, no
    # master connection of an earlier run is reused.
    isolated = replace(bed, control_dir=bed.control_dir / "input" if bed.control_dir else None)
    isolated.outputs = bed.outputs
    before, logins = bed.sh(SNAPSHOT), bed.sh(SSH_LOGINS)
    start = time.monotonic()
    with bed.traffic(0.5) as report, ThreadPoolExecutor(4) as pool:
        runs = dict(pool.map(lambda case: refused(isolated, case[0], case[1][1]), CASES.items()))
    seconds = time.monotonic() - start
    for label, (variable, _extra) in CASES.items():
        run = runs[label]
        says = "Refused before any host was touched" in run.output
        kind = "refused by the input check" if says else "refused by the argument spec"
        results.add(
            f"input: {label}",
            f"refused, names `{variable}`, host untouched",
            f"rc={run.rc}, {kind}, names `{variable}`: {variable in run.output}",
            None,
            run.seconds,
        )
    for label, (variable, _extra) in CASES.items():
        run = runs[label]
        assert run.rc != 0, label
        assert f"'{variable}'" in run.output or f"{variable} " in run.output, label
        assert (
            "Refused before any host was touched" in run.output
            or "Validation of arguments failed" in run.output
        ), label
    assert bed.sh(SNAPSHOT) == before, "a refused run changed the host"
    assert bed.sh(SSH_LOGINS) == logins, "a refused run logged in to the host"
    assert report.failed == [], report.summary()
    assert bed.served_version() == "v1"
    results.add(
        "input: all 15 runs, 4 at a time, under load",
        "no SSH login, host unchanged, no failed request",
        f"host unchanged, no login; {report.summary()}",
        report,
        seconds,
    )
    assert_a_login_is_counted(isolated, results, int(logins))


def assert_a_login_is_counted(bed: Bed, results: Results, logins: int) -> None:
    """The control for "no login": a run that does reach the host (status.yml,
    through the same fresh control directory) raises the same count."""
    run = bed.playbook("status.yml")
    seen = int(bed.sh(SSH_LOGINS)) - logins
    results.add(
        "input: control, status.yml through the same control directory",
        "its SSH login is counted",
        f"rc={run.rc}, {seen} login(s) counted",
        None,
        run.seconds,
    )
    assert run.rc == 0, run.output[-4000:]
    assert seen >= 1, "the login count did not see a run that reached the host"
