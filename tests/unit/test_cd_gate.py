"""The CD workflow's gate (.github/workflows/cd.yml, job gate, step Decide), run
as written with bash: a deploy needs its commit on main and CI and Docker Publish
passed for it, whether a tag, a workflow_run or an operator started it.

The step runs in a scratch git repository (main, and a commit that is not on
main) with a stand-in `gh` that answers the workflow runs' conclusions.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FAKE_GH = """#!/bin/sh
case "$2" in
  */ci.yml/*) echo "$FAKE_CI" ;;
  */docker-publish.yml/*) echo "$FAKE_PUBLISH" ;;
  *) exit 3 ;;
esac
"""


def decide_script() -> str:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "cd.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["gate"]["steps"] if s.get("id") == "decide"]
    return str(step["run"])


def git(repo: Path, *args: str) -> str:
    who = {"NAME": "t", "EMAIL": "t@t"}
    env = {
        **os.environ,
        **{f"GIT_{r}_{k}": v for r in ("AUTHOR", "COMMITTER") for k, v in who.items()},
    }
    result = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@dataclass
class Repo:
    path: Path
    on_main: str
    off_main: str


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    path = tmp_path_factory.mktemp("gate")
    git(path, "init", "-q", "-b", "main")
    git(path, "commit", "-q", "--allow-empty", "-m", "one")
    git(path, "commit", "-q", "--allow-empty", "-m", "two")
    on_main = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "-q", "-b", "side")
    git(path, "commit", "-q", "--allow-empty", "-m", "not on main")
    off_main = git(path, "rev-parse", "HEAD")
    git(path, "update-ref", "refs/remotes/origin/main", on_main)
    bin_dir = path / ".bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    return Repo(path, on_main, off_main)


def decide(
    repo: Repo, tmp_path: Path, ci: str = "success", **env: str
) -> tuple[int, dict[str, str], str]:
    output = tmp_path / "output"
    output.touch()
    full_env = {
        "PATH": f"{repo.path / '.bin'}:{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_REPOSITORY": "org/app",
        "FAKE_CI": ci,
        "FAKE_PUBLISH": "success",
        "REF": "refs/heads/main",
        "PUSH_SHA": repo.on_main,
        "INPUT_ACTION": "deploy",
        "INPUT_SHA": "",
        **env,
    }
    result = subprocess.run(
        ["bash", "-c", decide_script()],
        cwd=repo.path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return result.returncode, outputs, result.stdout + result.stderr


def test_a_manual_deploy_of_a_commit_of_main_with_ci_passed_proceeds(
    repo: Repo, tmp_path: Path
) -> None:
    rc, outputs, log = decide(repo, tmp_path, EVENT="workflow_dispatch", INPUT_SHA=repo.on_main[:7])
    assert rc == 0, log
    assert outputs == {"proceed": "true", "action": "deploy", "sha": repo.on_main}


DISPATCH = {"EVENT": "workflow_dispatch"}
BOTH = "needs both to have succeeded"


@pytest.mark.parametrize(
    ("env", "ci", "message"),
    [
        pytest.param({**DISPATCH, "INPUT_SHA": "OFF"}, "success", "is not on main", id="off main"),
        pytest.param({**DISPATCH, "INPUT_SHA": "ON"}, "failure", BOTH, id="CI failed"),
        pytest.param({**DISPATCH, "INPUT_SHA": "ON"}, "pending", BOTH, id="CI pending"),
        pytest.param(
            {**DISPATCH, "INPUT_SHA": "ON", "REF": "refs/heads/side"},
            "success",
            "run CD from main",
            id="from a branch",
        ),
        pytest.param({**DISPATCH, "INPUT_SHA": "1234567"}, "success", "names no single", id="x"),
        pytest.param({**DISPATCH, "INPUT_SHA": "abc; rm"}, "success", "lowercase hex", id="bad"),
        pytest.param({"EVENT": "push", "PUSH_SHA": "OFF"}, "success", "not on main", id="tag"),
        pytest.param({"EVENT": "push", "PUSH_SHA": "ON"}, "failure", "did not succeed", id="CI"),
    ],
)
def test_a_deploy_that_fails_the_gate_stops(
    repo: Repo, tmp_path: Path, env: dict[str, str], ci: str, message: str
) -> None:
    named = {"ON": repo.on_main, "OFF": repo.off_main}
    env = {k: named.get(v, v) for k, v in env.items()}
    rc, outputs, log = decide(repo, tmp_path, ci, **env)
    assert rc == 1, log
    assert message in log and "proceed" not in outputs


def test_a_tag_on_main_with_ci_passed_proceeds(repo: Repo, tmp_path: Path) -> None:
    rc, outputs, log = decide(repo, tmp_path, EVENT="push", PUSH_SHA=repo.on_main)
    assert rc == 0, log
    assert outputs["sha"] == repo.on_main and outputs["proceed"] == "true"


def test_a_rollback_needs_no_ci_lookup(repo: Repo, tmp_path: Path) -> None:
    rc, outputs, log = decide(
        repo, tmp_path, "failure", EVENT="workflow_dispatch", INPUT_ACTION="rollback"
    )
    assert rc == 0, log
    assert outputs == {"proceed": "true", "action": "rollback", "sha": ""}


def test_workflow_run_of_a_commit_off_main_stops(repo: Repo, tmp_path: Path) -> None:
    rc, _, log = decide(
        repo, tmp_path, EVENT="workflow_run", RUN_CONCLUSION="success", RUN_EVENT="push",
        RUN_REPOSITORY="org/app", RUN_SHA=repo.off_main,
    )  # fmt: skip
    assert rc == 1 and "is not on main" in log


def pins(path: Path) -> dict[str, str]:
    """name -> version of a requirements file (lower case, '_' as '-')."""
    found = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split(" ")[0].split("==")
            found[name.lower().replace("_", "-")] = version
    return found


def test_the_deploy_job_installs_only_requirements_cd_with_hashes() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "cd.yml").read_text())
    runs = "\n".join(str(s.get("run", "")) for s in workflow["jobs"]["deploy"]["steps"])
    assert "make setup" not in runs and "requirements.txt" not in runs
    install = "pip install --require-hashes --no-deps --only-binary=:all: -r requirements-cd.txt"
    assert install in runs
    text = (ROOT / "requirements-cd.txt").read_text()
    cd, dev = pins(ROOT / "requirements-cd.txt"), pins(ROOT / "requirements.txt")
    assert {"ansible", "ansible-core", "ansible-runner", "pyyaml"} <= set(cd)
    assert {name: dev.get(name) for name in cd} == cd, "the same versions as requirements.txt"
    assert text.count("--hash=sha256:") >= len(cd)
    assert len(cd) < 20, "only what a deploy needs"
