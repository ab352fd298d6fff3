"""The README's commands, run as written against test servers (issue 14, item 8).

The README's blocks marked `docs-test` are read and run by testbed.readme, as the unit
test (tests/unit/test_readme_vault.py) reads them: the block `vault-layout` at a
terminal, in a scratch view of the repository whose inventory is a copy of
inventories/production, HOME there and an editor that writes the vault. Only the
placeholders a user replaces are replaced: the README's app_image (by the test bed's
registry), its host app1.example.com (by a test server, in host_vars), SERVER and the
seed's checkout path. This checkout's HEAD is published as docker-publish tags a
commit (its full sha and its first 7 characters), so `-e sha=$(git rev-parse HEAD)`
deploys as written.

The vault steps: each line of the block `playbooks` runs against the e2e server (the
`bed`), with the vault password file that the block exports; the deploys serve the
release through the edge proxy, and its process has the vault's value.

The cut-over from the seed's compose stack: a server of its own runs the seed's stack
(a checkout with a docker-compose.yml, the sample app published on port 80, no nginx
running, as the seed had none); then the blocks `cut-over-beside`, `cut-over-stop`
(on the server, over SSH as the deploy user) and `cut-over-port-80` run, and port 80
serves the release deployed in step 1, the stack's containers gone.

The tests run in file order.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import ROOT, app, images, registry, servers
from testbed.bed import Bed
from testbed.readme import Workspace, block_lines, make_workspace, readme_block
from testbed.servers import Server

pytestmark = pytest.mark.e2e

VAULT_SECRET = "sk-or-d14-readme-5e0b"  # what the editor writes as the vault's value
README_IMAGE = "ghcr.io/your-org/melk-ai"  # the README's placeholder for app_image
README_HOST = "app1.example.com"  # inventories/production/hosts.yml's placeholder
CHECKOUT = "/home/deploy/melk-ai"  # the seed's checkout on the server
SEED_PROJECT = "melk-ai"  # its Compose project (the checkout's directory name)
SEED_COMPOSE = """\
services:
  melk-ai:
    image: melk-ai:seed
    ports:
      - "80:8000"
    restart: unless-stopped
"""


def git_head(*args: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", *args, "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def head(releases: dict[str, str]) -> str:
    """This checkout's HEAD, its sample release published as docker-publish tags it
    (after the registry is up)."""
    assert releases
    sha = app.build_release("readme")
    full, short = git_head(), git_head("--short=7")
    app.publish_tags(sha, full, short)
    return full


def lay_out(root: Path, server: Server) -> Workspace:
    """The README's vault steps, as written, in a scratch workspace; then the user's
    own image and server in place of the README's placeholders."""
    workspace = make_workspace(
        root,
        f"vault_openrouter_api_key: {VAULT_SECRET}\n",
        ANSIBLE_SSH_CONTROL_PATH_DIR=tempfile.mkdtemp(prefix="readme-cp-"),
    )
    rc, output = workspace.at_a_terminal(readme_block("vault-layout"))
    assert rc == 0, output
    main = workspace.inventory / "group_vars" / "all" / "main.yml"
    text, count = re.subn(
        rf"^app_image: {re.escape(README_IMAGE)}$",
        f"app_image: {app.pull_repository()}",
        main.read_text(),
        flags=re.M,
    )
    assert count == 1, f"the README's steps set app_image once in main.yml:\n{main.read_text()}"
    main.write_text(text)
    assert README_HOST in (workspace.inventory / "hosts.yml").read_text()
    host = servers.inventory([server], {})["all"]["hosts"]  # type: ignore[index]
    host_vars = {
        **host[server.name],
        # The test bed's own: its registry over plain HTTP, a shorter watch.
        "docker_daemon_options": {"insecure-registries": [registry.pull_address()]},
        "app_verify_seconds": 3,
    }
    (workspace.inventory / "host_vars").mkdir()
    (workspace.inventory / "host_vars" / f"{README_HOST}.yml").write_text(json.dumps(host_vars))
    return workspace


def exports() -> str:
    """The vault block's `export` lines: the shell the README's commands run in."""
    return "\n".join(line for line in block_lines("vault-layout") if line.startswith("export "))


def on_the_test_bed(line: str, server: Server) -> str:
    """A README line with http://SERVER[:PORT] as this machine reaches that port of the server."""

    def url(match: re.Match[str]) -> str:
        port = int(match.group(1) or 80)
        return f"http://127.0.0.1:{servers.published(server.name, port)}"

    return re.sub(r"http://SERVER(?::(\d+))?", url, line)


def run_line(workspace: Workspace, line: str, outputs: list[str]) -> tuple[int, str]:
    """One README line, in a shell with the vault block's exports, from the workspace's root."""
    rc, output = workspace.bash(f"{exports()}\n{line}", timeout=900)
    outputs.append(output)
    return rc, output


def served(server: Server, port: int = 80, path: str = "/version") -> str:
    """The version of the sample app that answers on the server's `port`, '' when none."""
    url = f"http://127.0.0.1:{servers.published(server.name, port)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # nosec B310
            return str(json.loads(resp.read())["version"])
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return ""


def secret_digest() -> str:
    return hashlib.sha256(f"{VAULT_SECRET}\n".encode()).hexdigest()


# --------------------------------------------------------------- the vault steps


@pytest.fixture(scope="module")
def vault_docs(bed: Bed, head: str, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return lay_out(tmp_path_factory.mktemp("readme-vault"), bed.server)


@pytest.fixture(scope="module")
def outputs() -> list[str]:
    return []


# The lines of the README's block `playbooks`, by what they do.
PLAYBOOK_LINES = {
    "provision": r"provision\.yml$",
    "deploy": r"deploy\.yml -e sha=\$\(git rev-parse HEAD[^)]*\)$",
    "deploy short": r"deploy\.yml -e sha=\$\(git rev-parse --short=7 HEAD\)$",
    "rollback": r"rollback\.yml$",
    "rollback example": r"rollback\.yml -e sha=1a2b3c4d$",
    "status": r"status\.yml$",
}


def playbook_line(name: str) -> str:
    """The one line of the block `playbooks` that PLAYBOOK_LINES[name] finds."""
    pattern = PLAYBOOK_LINES[name]
    found = [line for line in block_lines("playbooks") if re.search(pattern, line)]
    assert len(found) == 1, (pattern, found)
    return found[0]


def test_each_line_of_the_block_is_run_below() -> None:
    assert sorted(playbook_line(name) for name in PLAYBOOK_LINES) == sorted(
        block_lines("playbooks")
    )


def test_provision_as_written(vault_docs: Workspace, outputs: list[str]) -> None:
    rc, output = run_line(vault_docs, playbook_line("provision"), outputs)
    assert rc == 0, output[-4000:]


def test_deploy_as_written_serves_with_the_vaults_value(
    bed: Bed, vault_docs: Workspace, head: str, outputs: list[str]
) -> None:
    rc, output = run_line(vault_docs, playbook_line("deploy"), outputs)
    assert rc == 0, output[-4000:]
    assert bed.state()["current"]["sha"] == head
    assert bed.served_version() == "readme"  # through the edge proxy's port 80
    assert bed.release_env_sha256("OPENROUTER_API_KEY") == secret_digest()


def test_deploy_of_the_short_tag_as_written(
    bed: Bed, vault_docs: Workspace, head: str, outputs: list[str]
) -> None:
    rc, output = run_line(vault_docs, playbook_line("deploy short"), outputs)
    assert rc == 0, output[-4000:]
    assert bed.state()["current"]["sha"] == head[:7]
    assert bed.served_version() == "readme"
    assert bed.release_env_sha256("OPENROUTER_API_KEY") == secret_digest()


def test_rollback_as_written_goes_to_the_previous_release(
    bed: Bed, vault_docs: Workspace, head: str, outputs: list[str]
) -> None:
    rc, output = run_line(vault_docs, playbook_line("rollback"), outputs)
    assert rc == 0, output[-4000:]
    assert bed.state()["current"]["sha"] == head
    assert bed.served_version() == "readme"
    assert bed.release_env_sha256("OPENROUTER_API_KEY") == secret_digest()


def test_rollback_to_the_readmes_example_sha_names_the_retained_releases(
    bed: Bed, vault_docs: Workspace, head: str, outputs: list[str]
) -> None:
    # 1a2b3c4d is the README's example of a prefix: no release here has it.
    rc, output = run_line(vault_docs, playbook_line("rollback example"), outputs)
    assert rc != 0
    assert "matches no retained release; retained releases:" in output, output[-4000:]
    assert head[:12] in output.split("matches no retained release", 1)[1]
    assert bed.state()["current"]["sha"] == head
    assert bed.served_version() == "readme"


def test_status_as_written(bed: Bed, vault_docs: Workspace, head: str, outputs: list[str]) -> None:
    rc, output = run_line(vault_docs, playbook_line("status"), outputs)
    assert rc == 0, output[-4000:]
    assert head[:12] in output


def test_the_vaults_value_is_in_no_output(outputs: list[str]) -> None:
    assert len(outputs) == 6
    assert not [i for i, output in enumerate(outputs) if VAULT_SECRET in output]


# ------------------------------------------------- the cut-over from the seed's stack


def docker_exec(name: str, command: str, *options: str) -> str:
    return subprocess.run(
        ["docker", "exec", *options, name, "sh", "-c", command],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def seed_containers(name: str) -> str:
    return docker_exec(
        name, f"docker ps -aq --filter label=com.docker.compose.project={SEED_PROJECT}"
    ).strip()


@pytest.fixture(scope="module")
def seed(releases: dict[str, str], head: str) -> Iterator[Server]:
    """A server as the seed left it: Docker and Compose, no web server, the app's
    stack up from its checkout (the sample app, its own release `seed`, built here as
    the seed's `--build` built it there), published on port 80."""
    assert releases
    name = f"{os.environ.get('MELK_E2E_SERVER', 'melk-e2e-1')}-cut"
    server = servers.start(name, images.SERVER_PROVISIONED.ref, ("-p", "127.0.0.1::8081"))
    try:
        docker_exec(name, "systemctl disable --now nginx")
        sha = app.build_release("seed")
        servers.load_image(name, app.push_ref(sha))
        docker_exec(name, f"docker tag {app.push_ref(sha)} melk-ai:seed")
        subprocess.run(
            [
                "docker", "exec", "-i", name, "sh", "-c",
                f"install -d -o deploy -g deploy {CHECKOUT} && cat > {CHECKOUT}/docker-compose.yml"
                f" && chown deploy:deploy {CHECKOUT}/docker-compose.yml",
            ],
            input=SEED_COMPOSE, text=True, capture_output=True, check=True,
        )  # fmt: skip
        docker_exec(name, "docker compose up -d --wait", "-w", CHECKOUT)
        yield server
    finally:
        if not os.environ.get("MELK_KEEP_TESTBED"):
            servers.remove(name)


@pytest.fixture(scope="module")
def cut_docs(seed: Server, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return lay_out(tmp_path_factory.mktemp("readme-cut"), seed)


def test_the_seeds_stack_serves_on_port_80(seed: Server) -> None:
    assert served(seed, 80) == "seed"
    assert seed_containers(seed.name)


def test_step_1_deploys_beside_the_old_stack_on_port_8081(
    seed: Server, cut_docs: Workspace, head: str, outputs: list[str]
) -> None:
    lines = block_lines("cut-over-beside")
    assert [("provision.yml" in x, "deploy.yml" in x, "curl" in x) for x in lines] == [
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ]
    for line in lines:
        rc, output = run_line(cut_docs, on_the_test_bed(line, seed), outputs)
        assert rc == 0, f"{line}\n{output[-4000:]}"
    assert served(seed, 8081) == "readme"
    assert served(seed, 80) == "seed"  # the old stack still serves


def test_step_2_stops_the_old_stack_over_ssh(seed: Server, cut_docs: Workspace) -> None:
    (script,) = block_lines("cut-over-stop")
    assert "/path/to/old/checkout" in script
    result = subprocess.run(
        [*servers.ssh_command(seed), script.replace("/path/to/old/checkout", CHECKOUT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not seed_containers(seed.name)
    assert served(seed, 80) == ""


def test_step_3_hands_port_80_to_the_edge_proxy(
    seed: Server, cut_docs: Workspace, head: str, outputs: list[str]
) -> None:
    lines = block_lines("cut-over-port-80")
    assert ["provision.yml" in x for x in lines] == [True, False]
    for line in lines:
        rc, output = run_line(cut_docs, on_the_test_bed(line, seed), outputs)
        assert rc == 0, f"{line}\n{output[-4000:]}"
    # The release of step 1 serves on port 80, through the edge proxy, with the vault's value.
    assert served(seed, 80) == "readme"
    bed = Bed(seed, cut_docs.inventory, {}, [seed])
    assert bed.state()["current"]["sha"] == head
    assert bed.release_env_sha256("OPENROUTER_API_KEY") == secret_digest()
    assert not seed_containers(seed.name)
    assert VAULT_SECRET not in "".join(outputs)
