"""Make sure a Docker engine answers, and the host tools the test bed needs exist.

On a fresh Debian machine (root, no engine running) this installs Debian's
docker.io and starts dockerd in the background. As a non-root user it never
installs anything: it says what is missing and stops.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from testbed import STATE_DIR, TestbedError, log

# Host packages the test bed uses, by the command that shows each is present.
HOST_PACKAGES: dict[str, str] = {
    "dockerd": "docker.io",
    "debootstrap": "debootstrap",
    "ssh": "openssh-client",
    "docker-registry": "docker-registry",
    "nft": "nftables",  # checks switch files (unit-docker)
    "wrk": "wrk",  # HTTP load with keep-alive connections (e2e, faults, bench)
    # htpasswd -B: the login of the registry that requires one (registry login tests)
    "htpasswd": "apache2-utils",
    "pebble": "pebble",  # the ACME server of tests/e2e/test_tls.py (testbed.tls)
}
# Packages detected by a file rather than a command.
HOST_FILES: dict[str, str] = {
    "/bin/busybox": "busybox-static",
}


def docker_answers(timeout: float = 10.0) -> bool:
    """True when `docker info` reaches a running engine."""
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def missing_packages() -> list[str]:
    """Debian packages the test bed needs that are not installed."""
    missing = [pkg for cmd, pkg in HOST_PACKAGES.items() if shutil.which(cmd) is None]
    missing += [pkg for path, pkg in HOST_FILES.items() if not Path(path).exists()]
    # busybox-static replaces the dynamic busybox; check it is the static one.
    if Path("/bin/busybox").exists() and "busybox-static" not in missing:
        probe = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", "busybox-static"],
            capture_output=True,
            text=True,
            check=False,
        )
        if "install ok installed" not in probe.stdout:
            missing.append("busybox-static")
    return sorted(set(missing))


def ensure_host_packages() -> None:
    """Install the test bed's Debian packages when missing (root only)."""
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise TestbedError(
            "the test bed needs these Debian packages: "
            + " ".join(missing)
            + ". Install them (sudo apt-get install -y "
            + " ".join(missing)
            + ") or run as root so the test bed installs them itself."
        )
    log(f"installing host packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def start_dockerd(wait_seconds: float = 60.0) -> None:
    """Start dockerd in the background (its own session) and wait until it answers."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    logfile = STATE_DIR / "dockerd.log"
    log(f"starting dockerd in the background (log: {logfile})")
    with logfile.open("ab") as out:
        subprocess.Popen(
            ["dockerd"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if docker_answers(timeout=5):
            log("docker engine answers")
            return
        time.sleep(1)
    tail = logfile.read_text(errors="replace")[-2000:]
    raise TestbedError(f"dockerd did not answer within {wait_seconds:.0f} s; its log ends:\n{tail}")


def ensure_engine() -> None:
    """A Docker engine answers afterwards, or TestbedError says what is missing."""
    ensure_host_packages()
    if docker_answers():
        return
    if os.geteuid() != 0:
        raise TestbedError(
            "no Docker engine answers (docker info failed) and this user is not root, "
            "so the test bed will not start one. Start dockerd (or give this user "
            "access to /var/run/docker.sock) and run again."
        )
    start_dockerd()
