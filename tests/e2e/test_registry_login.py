"""Registry login (issue 14, item 1), over real SSH, against a registry that requires one.

The test bed's registry runs a second time, under a name of its own, with htpasswd
authentication (testbed.registry.authenticated); the sample releases are pushed to it
after a login. The server lists it in its engine's insecure-registries (provision.yml
with the inventory written here). A deploy from it needs app_registry_username and
app_registry_password: with the right ones it serves, with a wrong password it stops
before anything serving is touched, with a message that names the registry. The
password (template characters, quotes, a backslash: it must arrive literally) is then
looked for in every output, the ansible-runner artifacts of a CD run, the release
history, the containers' labels and the server's journal and syslog.

The tests run in file order against one server.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testbed import ROOT, app, registry
from testbed.bed import Bed, Run, playbook_env
from testbed.registry import Registry

pytestmark = pytest.mark.e2e

USERNAME = "melk-rl-machine"
CORE = "P4ss-7c2e91"  # the password's distinctive part: looked for on its own too
PASSWORD = "rl-" + CORE + "-{{ 7*7 }}-$HOME-'\"\\-end"  # the test bed's own
WRONG = "rl-wrong-" + CORE[::-1]
SECRETS = [
    PASSWORD,
    CORE,
    WRONG,
    base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode(),  # as config.json keeps it
]
CONFIG = "/home/deploy/.docker/config.json"


@dataclass
class Auth:
    registry: Registry
    inventory: Path
    credentials: Path
    wrong: Path
    work: Path
    outputs: list[str] = field(default_factory=list)

    @property
    def image(self) -> str:
        return f"{self.registry.pull_address()}/{app.REPOSITORY}"


def credentials_file(path: Path, password: str) -> Path:
    """The credentials as a user writes them in a vars file: the password `!unsafe`,
    so that Ansible takes it literally (the README says when to do that)."""
    lines = [
        f"app_registry_username: {USERNAME}",
        f"app_registry_password: !unsafe {json.dumps(password)}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def auth(
    bed: Bed, releases: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Auth]:
    work = tmp_path_factory.mktemp("registry-login")
    reg = registry.authenticated(USERNAME, PASSWORD)
    reg.start()
    try:
        for name in ("v1", "v2", "v3"):
            sha = releases[name]
            reg.push(app.push_ref(sha), f"{app.REPOSITORY}:{sha}", USERNAME, PASSWORD)
        data = json.loads(bed.inventory.read_text())
        group_vars = data["all"]["vars"]
        group_vars["app_image"] = f"{reg.pull_address()}/{app.REPOSITORY}"
        group_vars["docker_daemon_options"] = {
            "insecure-registries": [registry.pull_address(), reg.pull_address()]
        }
        inventory = bed.inventory.with_name(f"{bed.inventory.stem}-registry-login.json")
        inventory.write_text(json.dumps(data, indent=2))
        found = Auth(
            reg,
            inventory,
            credentials_file(work / "credentials.yml", PASSWORD),
            credentials_file(work / "wrong.yml", WRONG),
            work,
        )
        # The engine learns the second insecure registry (daemon.json, restart).
        run = bed.playbook("provision.yml", inventory=inventory)
        assert run.rc == 0, run.output[-4000:]
        yield found
    finally:
        reg.stop()


def deploy(bed: Bed, auth: Auth, release: str, *extra: str) -> Run:
    return bed.playbook(
        "deploy.yml", "-e", f"sha={bed.releases[release]}", *extra, inventory=auth.inventory
    )


def serving_snapshot(bed: Bed) -> dict[str, str]:
    """Everything that serves: the history, the proxy's upstream files, the containers
    (id, name, image, start time, running) and the answer on the public port."""
    containers = bed.sh(
        "docker ps -aq | xargs -r docker inspect --format "
        "'{{.Id}} {{.Name}} {{.Config.Image}} {{.State.StartedAt}} {{.State.Running}}'"
    )
    return {
        "history": bed.sh("cat /opt/melk-ai/releases.json"),
        "proxy": bed.sh("cat /etc/nginx/edge-proxy/* 2>/dev/null; true"),
        "containers": containers,
        "served": bed.served_version(),
    }


def image_on_server(bed: Bed, ref: str) -> bool:
    return bool(bed.sh(f"docker image ls -q {ref}").strip())


def test_start_from_a_release_of_the_plain_registry(bed: Bed) -> None:
    run = bed.playbook("deploy.yml", "-e", f"sha={bed.releases['v1']}")
    assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == "v1"


def test_without_credentials_the_pull_is_refused(bed: Bed, auth: Auth) -> None:
    # The registry really requires a login: without one the pull fails, nothing serving moves.
    before = serving_snapshot(bed)
    run = deploy(bed, auth, "v2")
    assert run.rc != 0, run.output[-4000:]
    assert f"image {auth.image}:{bed.releases['v2']} could not be pulled" in run.output
    assert serving_snapshot(bed) == before


def test_half_a_pair_is_refused_before_any_host_is_touched(bed: Bed, auth: Auth) -> None:
    before = serving_snapshot(bed)
    run = deploy(bed, auth, "v2", "-e", f"app_registry_username={USERNAME}")
    assert run.rc == 2, run.output[-4000:]
    assert "Refused before any host was touched" in run.output
    assert "app_registry_username is set but app_registry_password is not" in run.output
    assert serving_snapshot(bed) == before


def test_the_dry_run_says_it_would_log_in_and_changes_nothing(bed: Bed, auth: Auth) -> None:
    before = serving_snapshot(bed)
    run = deploy(bed, auth, "v2", "--check", "-e", f"@{auth.credentials}")
    assert run.rc == 0, run.output[-4000:]
    text = " ".join(run.output.split())
    assert "This deploy would:" in text and "image would be pulled" in text, text[-3000:]
    assert (
        f"login would log in to {auth.registry.pull_address()} as {USERNAME} "
        "(the deploy user's Docker client), then pull"
    ) in text
    assert serving_snapshot(bed) == before
    # no login happened
    assert auth.registry.pull_address() not in bed.sh(f"cat {CONFIG} 2>/dev/null; true")


def test_deploy_with_credentials_logs_the_deploy_user_in_and_serves(bed: Bed, auth: Auth) -> None:
    run = deploy(bed, auth, "v2", "-e", f"@{auth.credentials}")
    assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == "v2"
    assert image_on_server(bed, f"{auth.image}:{bed.releases['v2']}")
    # Logged in as the user who pulls (the SSH user, no become): its config, private.
    assert bed.sh(f"stat -c '%a %U' {CONFIG} /home/deploy/.docker").split("\n")[:2] == [
        "600 deploy",
        "700 deploy",
    ]
    auths = json.loads(bed.sh(f"cat {CONFIG}"))["auths"]
    assert list(auths) == [auth.registry.pull_address()]
    assert not bed.sh("ls /root/.docker/config.json 2>/dev/null; true").strip()


def test_a_wrong_password_stops_before_anything_serving_is_touched(bed: Bed, auth: Auth) -> None:
    before = serving_snapshot(bed)
    run = deploy(bed, auth, "v3", "-e", f"@{auth.wrong}")
    assert run.rc != 0, run.output[-4000:]
    assert "Refused before any host was touched" not in run.output  # it got to the host
    assert f"registry login to {auth.registry.pull_address()} as {USERNAME} failed" in run.output
    assert "Nothing was changed; the current release keeps serving" in run.output
    assert serving_snapshot(bed) == before
    assert not image_on_server(bed, f"{auth.image}:{bed.releases['v3']}")


def test_cd_passes_the_credentials_from_its_environment_literally(bed: Bed, auth: Auth) -> None:
    # The CD entry point: APP_REGISTRY_USERNAME / APP_REGISTRY_PASSWORD, as the workflow
    # passes its secrets. A fresh login (none kept from the tests before).
    bed.sh(f"rm -f {CONFIG}")
    env = playbook_env(
        APP_REGISTRY_USERNAME=USERNAME,
        APP_REGISTRY_PASSWORD=PASSWORD,
        ANSIBLE_SSH_CONTROL_PATH_DIR=tempfile.mkdtemp(prefix="rlcp-"),
    )
    env.pop("GITHUB_ACTIONS", None)
    result = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "python"),
            "-m",
            "cdrunner",
            "deploy",
            "--inventory",
            str(auth.inventory),
            "--sha",
            bed.releases["v3"],
            "--artifacts-dir",
            str(auth.work / "artifacts"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    auth.outputs.append(output)
    assert result.returncode == 0, output[-4000:]
    assert "secret values were found" not in output  # cdrunner masked a leak: none
    assert bed.served_version() == "v3"
    assert bed.sh(f"stat -c '%a %U' {CONFIG}").strip() == "600 deploy"


def test_the_password_is_in_no_output_artifact_history_label_or_host_log(
    bed: Bed, auth: Auth
) -> None:
    assert len(bed.outputs) >= 5 and auth.outputs, "runs after the others in this module"
    places: dict[str, str] = {f"output {i}": text for i, text in enumerate(bed.outputs)}
    places.update({f"cdrunner output {i}": text for i, text in enumerate(auth.outputs)})
    artifacts = [p for p in (auth.work / "artifacts").rglob("*") if p.is_file()]
    assert any("job_events" in p.parts for p in artifacts)
    places.update({str(p): p.read_bytes().decode("utf-8", "replace") for p in artifacts})
    places["releases.json"] = bed.sh("cat /opt/melk-ai/releases.json")
    places["container labels"] = bed.sh(
        "docker ps -aq | xargs -r docker inspect --format '{{json .Config.Labels}}'"
    )
    journal = bed.sh("journalctl --no-pager -o cat 2>/dev/null; true")
    places["journal"] = journal
    places["syslog"] = bed.sh("cat /var/log/syslog /var/log/messages 2>/dev/null; true")
    # Not vacuous: the journal holds the modules' invocations (the login's, masked).
    assert "docker_login" in journal or "Invoked with" in journal, journal[-2000:]
    leaks = [
        (where, secret) for where, text in places.items() for secret in SECRETS if secret in text
    ]
    assert not leaks, [where for where, _ in leaks]
    # The password did reach the server, literally (so the checks above are not vacuous).
    kept = json.loads(bed.sh(f"cat {CONFIG}"))["auths"][auth.registry.pull_address()]["auth"]
    assert base64.b64decode(kept).decode() == f"{USERNAME}:{PASSWORD}"
