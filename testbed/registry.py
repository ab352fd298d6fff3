"""A local image registry (Debian's docker-registry, a real Distribution server).

Two processes share one storage directory: one on 127.0.0.1 (the host's engine
pushes there: loopback registries need no TLS) and one on the docker0 bridge
address, which test servers reach as `registry.test` (--add-host
registry.test:host-gateway) and list in their engine's insecure-registries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from testbed import STATE_DIR, TestbedError, log

# A suite that stops its registry (the fault suite, the rollback e2e test) must
# not stop another suite's running beside it: MELK_REGISTRY_NAME gives a suite
# a registry of its own (its own port and storage).
NAME = os.environ.get("MELK_REGISTRY_NAME") or "registry"


def _default_port() -> int:
    """A port of this checkout's and registry's own (5100-5899), so they do not collide."""
    digest = hashlib.sha256(f"{STATE_DIR}:{NAME}".encode()).digest()
    return 5100 + int.from_bytes(digest[:2], "big") % 800


PORT = int(os.environ.get("MELK_REGISTRY_PORT") or _default_port())
REGISTRY_HOST = "registry.test"
DIR = STATE_DIR / NAME


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


def push_address() -> str:
    return f"127.0.0.1:{PORT}"


def pull_address() -> str:
    """How test servers name the registry."""
    return f"{REGISTRY_HOST}:{PORT}"


def _config(addr: str) -> str:
    return f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {DIR / "data"}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
"""


def answers(addr: str, timeout: float = 2.0) -> bool:
    try:
        # A fixed http:// URL on this machine.
        with urllib.request.urlopen(f"http://{addr}/v2/", timeout=timeout) as resp:  # nosec B310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _pidfile(name: str) -> Path:
    return DIR / f"{name}.pid"


def _running(name: str) -> bool:
    try:
        pid = int(_pidfile(name).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def start() -> None:
    """Start both listeners unless they answer already."""
    DIR.mkdir(parents=True, exist_ok=True)
    (DIR / "data").mkdir(exist_ok=True)
    listeners = {"loopback": push_address(), "bridge": f"{bridge_gateway()}:{PORT}"}
    for name, addr in listeners.items():
        if _running(name) and answers(addr):
            continue
        if answers(addr):
            # Not ours (no live pid file): a registry left by an earlier checkout at
            # this path. Using it would make stop() a no-op, and a test that stops the
            # registry would pull from it anyway.
            raise TestbedError(
                f"{addr} already answers, but not as this checkout's registry {NAME}; "
                f"stop the process listening on port {PORT} (e.g. fuser -k {PORT}/tcp) "
                "or set MELK_REGISTRY_PORT"
            )
        conf = DIR / f"{name}.yml"
        conf.write_text(_config(addr))
        with (DIR / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                ["docker-registry", "serve", str(conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _pidfile(name).write_text(str(proc.pid))
        deadline = time.monotonic() + 20
        while not answers(addr):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise TestbedError(f"registry on {addr} did not start; see {DIR / name}.log")
            time.sleep(0.2)
        log(f"registry listening on {addr}")


def stop_listener(name: str, pid: int) -> bool:
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
    _pidfile(name).unlink(missing_ok=True)
    return True


def stop() -> None:
    """Stop both listeners (the stored images stay)."""
    for name in ("loopback", "bridge"):
        try:
            pid = int(_pidfile(name).read_text())
        except (OSError, ValueError):
            continue
        stop_listener(name, pid)
