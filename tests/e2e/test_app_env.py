"""app.env is never wiped by omission (issue 14, item 4), over real SSH.

When app_env is not given at all, the host's app.env and so the next release's environment
stay as they are; `app_env: {}` given explicitly empties it; a change replaces the file by a
rename (a new inode), mode 0600. The secret is read from the environment of the release's
process and only its SHA-256 leaves the server: no value is ever printed, not even by a
failing assertion.

The tests run in file order against one server.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from testbed.bed import SENTINEL, Bed, Run

pytestmark = pytest.mark.e2e

ENV_FILE = "/opt/melk-ai/app.env"
EMPTY = hashlib.sha256(b"").hexdigest()
SECRET = hashlib.sha256(f"{SENTINEL}\n".encode()).hexdigest()  # as sed prints it


def inventory_without_app_env(bed: Bed) -> Path:
    """The bed's inventory with app_env left out entirely (not set to {})."""
    data = json.loads(bed.inventory.read_text())
    del data["all"]["vars"]["app_env"]
    path = bed.inventory.with_name(f"{bed.inventory.stem}-no-app-env.json")
    path.write_text(json.dumps(data, indent=2))
    return path


def deploy(bed: Bed, release: str, *extra: str, inventory: Path | None = None) -> Run:
    run = bed.playbook(
        "deploy.yml", "-e", f"sha={bed.releases[release]}", *extra, inventory=inventory
    )
    assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == release
    return run


def secret_seen_by_the_release(bed: Bed) -> str:
    """SHA-256 of APP_SECRET_TOKEN (with a newline) in the environment of the serving
    release's process (EMPTY when it has none), computed on the server. Read from
    /proc/PID/environ: a nested `docker exec` into the release fails in the test server."""
    container = f"melk-ai-{bed.state()['current']['slot']}"
    command = (
        f"pid=$(docker inspect --format '{{{{.State.Pid}}}}' {container}) && "
        "tr '\\0' '\\n' < /proc/$pid/environ | sed -n 's/^APP_SECRET_TOKEN=//p'"
        " | sha256sum | cut -d' ' -f1"
    )
    return bed.sh(command).strip()


def env_file(bed: Bed) -> dict[str, str]:
    """Mode, owner, size, inode and mtime of app.env: never its content."""
    mode, owner, size, inode, mtime = bed.sh(f"stat -c '%a %U %s %i %Y' {ENV_FILE}").split()
    return {"mode": mode, "owner": owner, "size": size, "inode": inode, "mtime": mtime}


def test_first_deploy_without_app_env_creates_an_empty_private_file(bed: Bed) -> None:
    # A host provisioned and never deployed to: no app.env yet.
    bed.sh(f"rm -f {ENV_FILE}")
    deploy(bed, "v1", inventory=inventory_without_app_env(bed))
    stat = env_file(bed)
    assert (stat["mode"], stat["owner"], stat["size"]) == ("600", "deploy", "0")
    assert secret_seen_by_the_release(bed) == EMPTY


def test_deploy_with_app_env_gives_the_release_its_secret(bed: Bed) -> None:
    deploy(bed, "v2")  # the inventory's group_vars carry app_env
    stat = env_file(bed)
    assert (stat["mode"], stat["owner"]) == ("600", "deploy")
    assert stat["size"] != "0"
    assert secret_seen_by_the_release(bed) == SECRET


def test_deploy_without_app_env_keeps_the_secret(bed: Bed) -> None:
    before = env_file(bed)
    deploy(bed, "v3", inventory=inventory_without_app_env(bed))
    # The file was not touched at all (same inode, same mtime), and the new
    # release, started from it, sees the secret.
    assert env_file(bed) == before
    assert secret_seen_by_the_release(bed) == SECRET


def test_app_env_given_empty_empties_it_atomically(bed: Bed) -> None:
    before = env_file(bed)
    deploy(bed, "v1", "-e", json.dumps({"app_env": {}}))
    after = env_file(bed)
    assert (after["mode"], after["owner"], after["size"]) == ("600", "deploy", "0")
    # Replaced by a rename, not rewritten in place: a reader sees the old file or the new.
    assert after["inode"] != before["inode"]
    assert secret_seen_by_the_release(bed) == EMPTY


def test_the_secret_never_reaches_the_output(bed: Bed) -> None:
    assert bed.outputs
    assert not [output for output in bed.outputs if SENTINEL in output]
