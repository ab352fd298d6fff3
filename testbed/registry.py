"""A local image registry (Debian's docker-registry, a real Distribution server).

Two processes share one storage directory: one on 127.0.0.1 (the host's engine
pushes there: loopback registries need no TLS) and one on the docker0 bridge
address, which test servers reach as `registry.test` (--add-host
registry.test:host-gateway) and list in their engine's insecure-registries.

A registry of its own name can require a login (htpasswd basic auth, as Debian's
docker-registry reads it; `htpasswd -B` from apache2-utils writes the file):
authenticated() sets one up, for the registry login tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from testbed import STATE_DIR, TestbedError, log

# A suite that stops its registry (the fault suite, the rollback e2e test) must
# not stop another suite's running beside it: MELK_REGISTRY_NAME gives a suite
# a registry of its own (its own port and storage).
NAME = os.environ.get("MELK_REGISTRY_NAME") or "registry"


# The registries `make test` runs side by side: the default one (demo, bench, the
# main e2e lane) and each lane's MELK_REGISTRY_NAME, each with a '-auth' twin
# (authenticated()). A checkout has a block of ports with a slot for each of them,
# so they cannot collide; a port hashed from each name collided for some checkout
# paths (two lanes given 5260, and the second's tests failed at setup).
SUITE_REGISTRIES = (
    "registry",
    "registry-docs",
    "registry-edge",
    "registry-extra",
    "registry-tls",
    "registry-fleet",
    "registry-faults",
)
AUTH_SUFFIX = "-auth"
FIRST_PORT = 5100
BLOCK = 16  # ports per checkout: 7 registries and their twins, 2 spare
BLOCKS = 50  # 5100-5899


def _hashed(text: str, modulo: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:2], "big") % modulo


def checkout_block(state_dir: Path | str) -> int:
    """The first port of a checkout's block (each checkout has one of BLOCKS)."""
    return FIRST_PORT + _hashed(str(state_dir), BLOCKS) * BLOCK


def default_port(name: str, state_dir: Path | str = STATE_DIR) -> int:
    """A port of this checkout's and registry's own (5100-5899). The suites' registries
    and their twins each have a slot of the checkout's block; any other name a hashed
    port outside that block (two such names may share one: set MELK_REGISTRY_PORT)."""
    base = checkout_block(state_dir)
    stem = name.removesuffix(AUTH_SUFFIX)
    if stem in SUITE_REGISTRIES:
        twin = len(SUITE_REGISTRIES) if name != stem else 0
        return base + SUITE_REGISTRIES.index(stem) + twin
    span = BLOCK * BLOCKS
    port = _hashed(f"{state_dir}:{name}", span)
    if base <= FIRST_PORT + port < base + BLOCK:
        port = (port + BLOCK) % span
    return FIRST_PORT + port


PORT = int(os.environ.get("MELK_REGISTRY_PORT") or default_port(NAME))
REGISTRY_HOST = "registry.test"
DIR = STATE_DIR / NAME
LISTENERS = ("loopback", "bridge")


def bridge_gateway() -> str:
    """The docker0 address that host-gateway resolves to."""
    out = subprocess.run(
        ["docker", "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for pool in json.loads(out or "[]") or []:
        if pool.get("Gateway"):
            return str(pool["Gateway"])
    # Older engines leave the gateway out of IPAM: read the bridge interface.
    addr = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True, check=False
    ).stdout.split()
    if "inet" in addr:
        return addr[addr.index("inet") + 1].split("/")[0]
    raise TestbedError("cannot read the docker0 bridge address")


def answers(addr: str, timeout: float = 2.0, login: bool = False) -> bool:
    """Whether a registry answers on addr: /v2/ says 200, or 401 (asks for a login)
    when `login` is true."""
    try:
        # A fixed http:// URL on this machine.
        with urllib.request.urlopen(f"http://{addr}/v2/", timeout=timeout) as resp:  # nosec B310
            return bool(resp.status == 200) and not login
    except urllib.error.HTTPError as err:
        return login and err.code == 401
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class Registry:
    """One registry: its name (its state directory under .testbed), its port, and the
    htpasswd file it checks logins against (None: no login)."""

    name: str
    port: int
    htpasswd: Path | None = None

    @property
    def dir(self) -> Path:
        return STATE_DIR / self.name

    def push_address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pull_address(self) -> str:
        """How test servers name the registry."""
        return f"{REGISTRY_HOST}:{self.port}"

    def config(self, addr: str) -> str:
        auth = (
            f"""auth:
  htpasswd:
    realm: melk-testbed
    path: {self.htpasswd}
"""
            if self.htpasswd is not None
            else ""
        )
        return f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.dir / "data"}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
{auth}http:
  addr: {addr}
"""

    def pidfile(self, listener: str) -> Path:
        return self.dir / f"{listener}.pid"

    def running(self, listener: str) -> bool:
        try:
            pid = int(self.pidfile(listener).read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return True

    def answers(self, addr: str) -> bool:
        return answers(addr, login=self.htpasswd is not None)

    def start(self) -> None:
        """Start both listeners unless they answer already."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        listeners = {"loopback": self.push_address(), "bridge": f"{bridge_gateway()}:{self.port}"}
        for name, addr in listeners.items():
            if self.running(name) and self.answers(addr):
                continue
            if answers(addr) or answers(addr, login=True):
                # Not ours (no live pid file): a registry left by an earlier checkout at
                # this path. Using it would make stop() a no-op, and a test that stops the
                # registry would pull from it anyway.
                raise TestbedError(
                    f"{addr} already answers, but not as this checkout's registry {self.name}; "
                    f"stop the process listening on port {self.port} (e.g. fuser -k "
                    f"{self.port}/tcp) or set MELK_REGISTRY_PORT"
                )
            conf = self.dir / f"{name}.yml"
            conf.write_text(self.config(addr))
            with (self.dir / f"{name}.log").open("ab") as out:
                proc = subprocess.Popen(
                    ["docker-registry", "serve", str(conf)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.pidfile(name).write_text(str(proc.pid))
            deadline = time.monotonic() + 20
            while not self.answers(addr):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise TestbedError(
                        f"registry on {addr} did not start; see {self.dir / name}.log"
                    )
                time.sleep(0.2)
            log(f"registry {self.name} listening on {addr}")

    def stop_listener(self, listener: str, pid: int) -> bool:
        """SIGTERM one listener, SIGKILL it after 5 s; False if it was not running."""
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return False
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
        else:
            # still there after 5 s: it must not answer on once it is said to be stopped
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        self.pidfile(listener).unlink(missing_ok=True)
        return True

    def stop(self) -> None:
        """Stop both listeners (the stored images stay)."""
        for listener in LISTENERS:
            try:
                pid = int(self.pidfile(listener).read_text())
            except (OSError, ValueError):
                continue
            self.stop_listener(listener, pid)

    def push(self, source: str, target: str, username: str = "", password: str = "") -> str:
        """Tag the local image source as REGISTRY/target and push it (after a login with
        a Docker client configuration of its own, when given a username); the pushed ref."""
        ref = f"{self.push_address()}/{target}"
        with tempfile.TemporaryDirectory(prefix="melk-registry-login-") as config:
            steps: list[tuple[list[str], str | None]] = [(["docker", "tag", source, ref], None)]
            if username:
                login = ["login", "--username", username, "--password-stdin"]
                steps.append(
                    (["docker", "--config", config, *login, self.push_address()], password)
                )
            steps.append((["docker", "--config", config, "push", ref], None))
            for command, stdin in steps:
                result = subprocess.run(
                    command, input=stdin, capture_output=True, text=True, check=False
                )
                if result.returncode != 0:
                    raise TestbedError(
                        f"{' '.join(command[:2])} ... for {ref} failed: {result.stderr[-1000:]}"
                    )
        return ref


DEFAULT = Registry(NAME, PORT)


def authenticated(username: str, password: str, name: str | None = None) -> Registry:
    """A registry that requires a login (username and password, bcrypt in an htpasswd
    file, given to htpasswd on its standard input), named `name` (by default
    MELK_REGISTRY_NAME's with '-auth' after it), on a port of its own. Not started."""
    name = name or f"{NAME}-auth"
    directory = STATE_DIR / name
    directory.mkdir(parents=True, exist_ok=True)
    htpasswd = directory / "htpasswd"
    result = subprocess.run(
        ["htpasswd", "-B", "-i", "-n", username],
        input=password,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise TestbedError(f"htpasswd failed (apache2-utils installed?): {result.stderr}")
    htpasswd.write_text(result.stdout.strip() + "\n")
    return Registry(name, default_port(name), htpasswd)


def push_address() -> str:
    return DEFAULT.push_address()


def pull_address() -> str:
    """How test servers name the registry."""
    return DEFAULT.pull_address()


def start() -> None:
    """Start both listeners of the suite's registry unless they answer already."""
    DEFAULT.start()


def stop_listener(name: str, pid: int) -> bool:
    """SIGTERM one listener of the suite's registry, SIGKILL it after 5 s; False if it
    was not running."""
    return DEFAULT.stop_listener(name, pid)


def stop() -> None:
    """Stop both listeners of the suite's registry (the stored images stay)."""
    DEFAULT.stop()
