"""Sample app releases, built locally and pushed to the test bed's registry.

Each release gets a git-sha-like tag (40 hex characters) derived from its
version and mode, so tests can name them the way a user names commits.
"""

from __future__ import annotations

import hashlib
import os
import subprocess

from testbed import ROOT, TestbedError, images, log, registry

APP_DIR = ROOT / "app"
REPOSITORY = "melk-ai"
# Releases built for Molecule never go through a registry: they are loaded
# into a test server's engine directly, under this name.
LOCAL_REPOSITORY = "melk-testbed/melk-ai"
# The default app's switch file on a test server (roles/edge_proxy: an nft script
# naming the slot and the release that serve): what the suites and the bench read.
UPSTREAM = f"/etc/nginx/edge-proxy/{REPOSITORY}.upstream"


def release_sha(version: str, mode: str = "ok", extra: str = "") -> str:
    return hashlib.sha1(f"{version}/{mode}/{extra}".encode(), usedforsecurity=False).hexdigest()


def push_ref(sha: str) -> str:
    return f"{registry.push_address()}/{REPOSITORY}:{sha}"


def pull_repository() -> str:
    """app_image as test servers see it."""
    return f"{registry.pull_address()}/{REPOSITORY}"


def build_release(
    version: str, mode: str = "ok", extra_env: dict[str, str] | None = None, push: bool = True
) -> str:
    """Build (and push) one release of the sample app; return its sha."""
    env_bits = ",".join(f"{k}={v}" for k, v in sorted((extra_env or {}).items()))
    sha = release_sha(version, mode, env_bits)
    ref = push_ref(sha) if push else f"{LOCAL_REPOSITORY}:{sha}"
    args = [
        "docker",
        "build",
        "-q",
        "--build-arg",
        f"BASE_IMAGE={images.APP_BASE.ref}",
        "--build-arg",
        f"APP_VERSION={version}",
        "--build-arg",
        f"APP_MODE={mode}",
        "-t",
        ref,
    ]
    dockerfile = None
    if extra_env:
        # Extra ENV lines (e.g. APP_DEGRADE_AFTER) through a derived Dockerfile.
        base = (APP_DIR / "Dockerfile").read_text()
        lines = "".join(f"ENV {k}={v}\n" for k, v in sorted(extra_env.items()))
        # One file per process: suites of make test build the same release at once,
        # and one removed the other's file before its build read it.
        dockerfile = APP_DIR / f".Dockerfile.{sha[:12]}.{os.getpid()}"
        dockerfile.write_text(base.replace("COPY server.py", lines + "COPY server.py"))
        args += ["-f", str(dockerfile)]
    env = dict(os.environ, DOCKER_BUILDKIT="0")  # the host's engine 20.10 has no buildx
    try:
        result = subprocess.run(
            [*args, str(APP_DIR)], capture_output=True, text=True, env=env, check=False
        )
    finally:
        if dockerfile is not None:
            dockerfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise TestbedError(f"building sample app {version}/{mode} failed: {result.stderr[-2000:]}")
    if push:
        pushed = subprocess.run(
            ["docker", "push", ref], capture_output=True, text=True, check=False
        )
        if pushed.returncode != 0:
            raise TestbedError(f"pushing {ref} failed: {pushed.stderr[-2000:]}")
    log(f"sample app {version} ({mode}) built as {sha[:12]}")
    return sha


def publish_tags(sha: str, *tags: str) -> None:
    """Push the release `sha` (built and pushed already) under more tags, as
    docker-publish tags a commit's image (its full sha and its first 7 characters)."""
    for tag in tags:
        ref = push_ref(tag)
        for command in (["docker", "tag", push_ref(sha), ref], ["docker", "push", ref]):
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise TestbedError(f"{' '.join(command[:2])} {ref} failed: {result.stderr[-2000:]}")
