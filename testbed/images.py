"""Local base images built with debootstrap + docker import, cached by recipe hash.

Each image is tagged with a hash of its recipe, so a warm run finds the tag and
skips the build; a changed recipe gets a new tag.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed import ROOT, STATE_DIR, TestbedError, log

RECIPE_VERSION = "1"

# Test servers: what a fresh cloud VM gives you (systemd, sshd, sudo, python3)
# plus a non-root deploy user with passwordless sudo.
SERVER_PACKAGES = (
    "python3",
    "python3-apt",
    "systemd",
    "systemd-sysv",
    "dbus",
    "sudo",
    "openssh-server",
    "ca-certificates",
    "iproute2",
    "procps",
)

SERVER_POST = r"""
set -eu
useradd --create-home --shell /bin/bash deploy
printf 'deploy ALL=(ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/deploy
chmod 0440 /etc/sudoers.d/deploy
install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh
# Every container gets host keys of its own at boot, not the image's.
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
  > /etc/systemd/system/ssh.service.d/testbed-hostkeys.conf
printf 'PasswordAuthentication no\nUseDNS no\n' > /etc/ssh/sshd_config.d/testbed.conf
# Test bed only (see testbed.md): an inner Docker 26 cannot write /proc/sys in
# this container; real servers do not need this drop-in.
mkdir -p /etc/systemd/system/docker.service.d
printf '[Service]\nEnvironment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\n' \
  > /etc/systemd/system/docker.service.d/testbed-ipv6.conf
systemctl mask getty.target console-getty.service systemd-udevd.service \
  systemd-firstboot.service 2>/dev/null || true
echo 'testbed' > /etc/hostname
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*
"""

APP_BASE_POST = r"""
set -eu
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/* \
  /usr/share/locale/* /var/log/*
"""

# A provisioned test server: the server image plus the Debian packages that
# playbooks/provision.yml installs (docker_host and edge_proxy), read from the
# roles so that the tag changes when their package lists do. The roles still run
# in full against it (configuration, services, users); apt finds the packages
# installed. Services stay as Debian's packages leave them: enabled.
ROLES_DIR = ROOT / "roles"
# Debian major version of each suite: the name of docker_host's vars file.
SUITE_MAJOR = {"trixie": "13", "bookworm": "12"}

PROVISIONED_POST = r"""
set -eu
export DEBIAN_FRONTEND=noninteractive
# No service starts while the image is built (there is no systemd to run it).
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
apt-get update -q
apt-get install -y -q --no-install-recommends "$@"
rm -f /usr/sbin/policy-rc.d
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*
"""


def _load_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except OSError:
        return None


def _apt_names(node: object) -> list[str]:
    """Literal package names of the apt tasks in a task list (blocks included)."""
    names: list[str] = []
    if isinstance(node, list):
        for item in node:
            names += _apt_names(item)
    elif isinstance(node, dict):
        for key in ("block", "rescue", "always"):
            names += _apt_names(node.get(key))
        for module in ("ansible.builtin.apt", "apt"):
            args = node.get(module)
            if isinstance(args, dict):
                value = args.get("name") or args.get("pkg") or []
                for name in [value] if isinstance(value, str) else list(value):
                    if isinstance(name, str) and "{{" not in name:
                        names.append(name)
    return names


def provisioned_packages(suite: str = "trixie") -> tuple[str, ...]:
    """The distribution packages playbooks/provision.yml installs on this suite."""
    os_vars = _load_yaml(ROLES_DIR / "docker_host" / "vars" / f"Debian-{SUITE_MAJOR[suite]}.yml")
    defaults = _load_yaml(ROLES_DIR / "docker_host" / "defaults" / "main.yml")
    packages: list[str] = []
    if isinstance(os_vars, dict):
        packages += os_vars.get("__docker_host_distribution_packages") or []
    if isinstance(defaults, dict):
        packages += defaults.get("docker_host_python_packages") or []
    for tasks in sorted((ROLES_DIR / "edge_proxy" / "tasks").glob("*.yml")):
        packages += _apt_names(_load_yaml(tasks))
    return tuple(dict.fromkeys(str(name) for name in packages))


SYSTEMD_CHANGES = ('CMD ["/lib/systemd/systemd"]', "ENV container=docker", "ENV LANG=C.UTF-8")


@dataclass(frozen=True)
class Recipe:
    """How to build one base image."""

    repository: str
    suite: str
    packages: tuple[str, ...]
    post: str
    changes: tuple[str, ...]
    # Built on top of this image (packages installed by post) instead of debootstrap.
    base: Recipe | None = None

    @property
    def tag(self) -> str:
        parts: list[object] = [RECIPE_VERSION, self.suite, self.packages, self.post, self.changes]
        if self.base is not None:
            parts.append(self.base.tag)
        blob = json.dumps(parts, sort_keys=True)
        return f"{self.suite}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


SERVER_TRIXIE = Recipe(
    "melk-testbed/server", "trixie", SERVER_PACKAGES, SERVER_POST, SYSTEMD_CHANGES
)
SERVER_BOOKWORM = Recipe(
    "melk-testbed/server", "bookworm", SERVER_PACKAGES, SERVER_POST, SYSTEMD_CHANGES
)
APP_BASE = Recipe(
    "melk-testbed/app-base",
    "trixie",
    ("python3",),
    APP_BASE_POST,
    ('CMD ["python3"]', "ENV PYTHONUNBUFFERED=1 LANG=C.UTF-8"),
)
SERVER_PROVISIONED = Recipe(
    "melk-testbed/server-provisioned",
    "trixie",
    provisioned_packages("trixie"),
    PROVISIONED_POST,
    SYSTEMD_CHANGES,
    base=SERVER_TRIXIE,
)
RECIPES = {
    "server": SERVER_TRIXIE,
    "server-bookworm": SERVER_BOOKWORM,
    "app-base": APP_BASE,
    "server-provisioned": SERVER_PROVISIONED,
}

# A tiny image (static busybox, about 1 MB) for "a container really runs" checks.
BUSYBOX_REF = "melk-testbed/busybox:1"


def image_exists(ref: str) -> bool:
    """True when the image is present and not empty (a failed import leaves 0 bytes)."""
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and int(result.stdout.strip() or 0) > 0


def _run(cmd: list[str], **kwargs: object) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise TestbedError(
            f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr[-3000:]}"
        )


def _import_dir(root: Path, ref: str, changes: tuple[str, ...]) -> None:
    change_args = [arg for change in changes for arg in ("--change", change)]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE
    )
    result = subprocess.run(
        ["docker", "import", *change_args, "-", ref],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    if tar.stdout is not None:
        tar.stdout.close()
    tar.wait()
    if result.returncode != 0 or tar.returncode != 0:
        subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)
        raise TestbedError(f"docker import of {ref} failed: {result.stderr.strip()}")


def _build_derived(recipe: Recipe, base: Recipe) -> None:
    """Run the recipe's post script in a container of the base image, commit it."""
    build(base)
    name = f"melk-testbed-build-{recipe.tag}"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    try:
        _run(
            [
                "docker",
                "run",
                "--name",
                name,
                "--label",
                "melk-testbed=build",
                base.ref,
                "/bin/sh",
                "-c",
                recipe.post,
                "post",
                *recipe.packages,
            ]
        )
        change_args = [arg for change in recipe.changes for arg in ("--change", change)]
        _run(["docker", "commit", *change_args, name, recipe.ref])
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def build(recipe: Recipe) -> str:
    """Build one image unless its tag exists already; return its reference."""
    if image_exists(recipe.ref):
        log(f"image {recipe.ref} cached")
        return recipe.ref
    if recipe.base is not None:
        log(f"building {recipe.ref} on {recipe.base.ref}: {' '.join(recipe.packages)}")
        _build_derived(recipe, recipe.base)
        log(f"image {recipe.ref} built")
        return recipe.ref
    log(f"building {recipe.ref} with debootstrap (about a minute)")
    cache = (
        STATE_DIR / "debootstrap-cache" / f"{recipe.repository.rsplit('/', 1)[-1]}-{recipe.suite}"
    )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="testbed-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--cache-dir={cache}",
                f"--include={','.join(recipe.packages)}",
                recipe.suite,
                str(root),
            ]
        )
        _run(["chroot", str(root), "/bin/sh", "-c", recipe.post])
        _import_dir(root, recipe.ref, recipe.changes)
    log(f"image {recipe.ref} built")
    return recipe.ref


def build_busybox() -> str:
    """A one-binary image from the host's static busybox."""
    if image_exists(BUSYBOX_REF):
        return BUSYBOX_REF
    with tempfile.TemporaryDirectory(prefix="testbed-busybox-") as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        shutil.copy2("/bin/busybox", root / "bin" / "busybox")
        for applet in ("sh", "echo", "sleep", "cat", "true"):
            (root / "bin" / applet).symlink_to("busybox")
        _import_dir(root, BUSYBOX_REF, ('CMD ["/bin/sh"]',))
    log(f"image {BUSYBOX_REF} built")
    return BUSYBOX_REF


def build_all(names: list[str] | None = None) -> dict[str, str]:
    """Build the named base images (all by default) in parallel; return name -> ref."""
    wanted = names or list(RECIPES)
    unknown = sorted(set(wanted) - set(RECIPES) - {"busybox"})
    if unknown:
        raise TestbedError(
            f"unknown image names: {', '.join(unknown)}; known: {', '.join(RECIPES)}"
        )
    refs: dict[str, str] = {}
    # Images built on another one come second, so no base is built twice at once.
    for derived in (False, True):
        batch = [n for n in wanted if n in RECIPES and (RECIPES[n].base is not None) == derived]
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = {name: pool.submit(build, RECIPES[name]) for name in batch}
            for name, future in futures.items():
                refs[name] = future.result()
    refs["busybox"] = build_busybox()
    return refs
