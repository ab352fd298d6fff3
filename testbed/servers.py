"""SSH test servers: systemd containers that run their own Docker engine.

Each is reached the way a real server is: over SSH as the non-root `deploy`
user with sudo. Ports are published on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from testbed import STATE_DIR, TestbedError, app, images, log, registry
from testbed.registry import REGISTRY_HOST

# What ansible.builtin.apt's cache_valid_time reads first for the cache's age.
APT_STAMP = "/var/lib/apt/periodic/update-success-stamp"

LABEL = "melk-testbed"
SSH_DIR = STATE_DIR / "ssh"

# What a systemd container with its own engine needs here (see testbed.md):
# no --privileged, which this kernel refuses.
SYSTEMD_FLAGS = [
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add",
    "NET_ADMIN",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--stop-signal",
    "SIGRTMIN+3",
]


@dataclass(frozen=True)
class Server:
    name: str
    ssh_port: int
    http_port: int
    ip: str

    @property
    def url(self) -> str:
        """The app through the server's edge proxy, from this machine."""
        return f"http://127.0.0.1:{self.http_port}"


def ssh_key() -> Path:
    """The test bed's SSH key pair (made once per checkout)."""
    SSH_DIR.mkdir(parents=True, exist_ok=True)
    key = SSH_DIR / "id_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "melk-testbed", "-f", str(key)],
            check=True,
        )
    return key


def _docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        raise TestbedError(f"docker {' '.join(args[:3])} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _published(name: str, port: int) -> int:
    out = _docker("port", name, f"{port}/tcp")
    return int(out.splitlines()[0].rsplit(":", 1)[1])


def published(name: str, port: int) -> int:
    """The host port (on 127.0.0.1) a test server's container port is published on."""
    return _published(name, port)


def inspect(name: str) -> Server:
    ip = _docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name)
    return Server(name, _published(name, 22), _published(name, 80), ip)


def wait_booted(name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = _docker("exec", name, "systemctl", "is-system-running", check=False)
        if state in {"running", "degraded"}:
            return
        time.sleep(0.5)
    raise TestbedError(f"systemd in {name} did not boot within {timeout:.0f} s (state {state!r})")


def ssh_command(server: Server, *options: str) -> list[str]:
    """ssh as the deploy user to a test server (its throwaway host key is not checked);
    the remote command goes after it."""
    args = ["ssh", "-i", str(ssh_key()), "-p", str(server.ssh_port)]
    for option in (
        "BatchMode=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
        *options,
    ):
        args += ["-o", option]
    return [*args, "deploy@127.0.0.1"]


def wait_ssh(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = subprocess.run(
            [*ssh_command(server, "ConnectTimeout=3"), "true"],
            capture_output=True,
            check=False,
        )
        if result.returncode == 0:
            return
        time.sleep(0.5)
    raise TestbedError(f"ssh to {server.name} (port {server.ssh_port}) did not answer")


def start(
    name: str,
    image: str,
    extra_args: tuple[str, ...] = (),
    http_publish: str = "127.0.0.1::80",
) -> Server:
    """Start (or replace) one test server and wait until SSH answers.

    http_publish is the docker run -p spec of the edge proxy's port 80: a free
    port on 127.0.0.1 by default, or a fixed one ("127.0.0.1:8080:80").

    On the provisioned image (its packages installed), apt's cache counts as
    refreshed at start, as it does in an image built within the hour (a cold
    run). Otherwise every provisioning of a warm run, with the image older than
    the roles' cache_valid_time, downloads and parses Debian's package lists
    again: measured idle, 38 s a provisioning against 30 s.
    """
    remove(name)
    pubkey = ssh_key().with_suffix(".pub").read_text()
    _docker(
        "run",
        "-d",
        "--name",
        name,
        "--hostname",
        name,
        "--label",
        f"{LABEL}=server",
        *SYSTEMD_FLAGS,
        "-v",
        f"{name}-docker:/var/lib/docker",
        "--add-host",
        f"{REGISTRY_HOST}:host-gateway",
        "-p",
        "127.0.0.1::22",
        "-p",
        http_publish,
        *extra_args,
        image,
    )
    wait_booted(name)
    if image == images.SERVER_PROVISIONED.ref:
        _docker("exec", name, "sh", "-c", f'mkdir -p "$(dirname {APT_STAMP})" && touch {APT_STAMP}')
    _write_authorized_keys(name, pubkey)
    server = inspect(name)
    wait_ssh(server)
    log(f"server {name} up: ssh 127.0.0.1:{server.ssh_port}, proxy 127.0.0.1:{server.http_port}")
    return server


def _write_authorized_keys(name: str, pubkey: str) -> None:
    result = subprocess.run(
        [
            "docker",
            "exec",
            "-i",
            name,
            "sh",
            "-c",
            "cat > /home/deploy/.ssh/authorized_keys && chown deploy:deploy "
            "/home/deploy/.ssh/authorized_keys && chmod 0600 /home/deploy/.ssh/authorized_keys",
        ],
        input=pubkey,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise TestbedError(f"cannot install the SSH key in {name}: {result.stderr.strip()}")


def remove(name: str) -> None:
    """Remove a test server and its inner engine's volume."""
    _docker("rm", "-f", "-v", name, check=False)
    _docker("volume", "rm", "-f", f"{name}-docker", check=False)


def group_vars(app_env: dict[str, str], verify_seconds: int, **extra: object) -> dict[str, object]:
    """The inventory variables of a test server: the sample app from the test
    bed's registry (which the server's engine reaches over plain HTTP),
    `app_env`, `app_verify_seconds`, and any `extra` variables."""
    return {
        "app_image": app.pull_repository(),
        "app_env": app_env,
        "app_verify_seconds": verify_seconds,
        **extra,
        "docker_daemon_options": {"insecure-registries": [registry.pull_address()]},
    }


def inventory(servers: list[Server], group_vars: dict[str, object]) -> dict[str, object]:
    """An Ansible inventory (as a dict, dump it as YAML or JSON) for the servers."""
    key = str(ssh_key())
    hosts = {
        s.name: {
            "ansible_host": "127.0.0.1",
            "ansible_port": s.ssh_port,
            "ansible_user": "deploy",
            "ansible_ssh_private_key_file": key,
            # Test inventories only: throwaway containers with fresh host keys.
            "ansible_ssh_common_args": (
                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
            ),
        }
        for s in servers
    }
    return {"all": {"hosts": hosts, "vars": group_vars}}


def write_inventory(path: Path, servers: list[Server], group_vars: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(inventory(servers, group_vars), indent=2))
    return path


def load_image(container: str, ref: str) -> None:
    """docker save | docker exec -i CONTAINER docker load: no registry needed."""
    save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
    assert save.stdout is not None
    try:
        load = subprocess.run(
            ["docker", "exec", "-i", container, "docker", "load", "-q"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
    finally:
        save.stdout.close()  # if load failed, save gets SIGPIPE instead of blocking
        save.wait(timeout=60)
    if load.returncode != 0 or save.returncode != 0:
        raise TestbedError(f"loading {ref} into {container} failed: {load.stderr.strip()}")
