"""The run itself, through ansible-runner's Python API.

Where secrets go: the extra vars (app_env, the registry password), the SSH key,
the known_hosts lines,
the vault password (ANSIBLE_VAULT_PASSWORD, as --vault-password-file) and the
generated inventory are written, mode 0600, into a private data dir that is a
fresh temporary directory (mode 0700), removed after the run; SSH's control
sockets live there too, and their masters are told to exit (ssh -O exit). That
cleanup also runs on SIGTERM, SIGINT and SIGHUP (a cancelled CD job): the
playbook is stopped (ansible-runner's cancel) and the directory removed at once.
ansible-runner references the extra vars there as ``-e @<file>``, so only the
path shows in its artifacts. The artifacts (job_events, stdout, command, rc,
status) go to a separate directory that is kept. ansible-runner writes the
whole environment of ansible-playbook into the artifact ``command``: that
environment is the caller's without secret variables (inputs.runner_env).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from cdrunner import ANSIBLE_CFG, PLAYBOOKS, ROOT
from cdrunner.events import Event, format_event, simplify
from cdrunner.inputs import (
    Target,
    extra_vars,
    extravars_text,
    inventory_for,
    limit_for,
    normalize_key,
    parse_app_env,
    placeholders,
    private_values,
    registry_login_from_env,
    runner_env,
    secret_values,
    setting,
    ssh_env,
    target_from_env,
)
from cdrunner.inventory import Shape, inventory_shape
from cdrunner.redact import mask, mask_quietly, redact_checksums, scrub_artifacts

ACTIONS = ("deploy", "rollback")


@dataclass(frozen=True)
class Request:
    action: str
    sha: str | None
    inventory: Path | None
    artifacts_dir: Path
    extra_vars_files: tuple[Path, ...] = ()
    limit: str | None = None


@dataclass
class Outcome:
    rc: int
    status: str
    artifact_path: Path
    events: list[Event] = field(default_factory=list)
    leaked: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Prepared:
    """Everything a run needs, decided before any file is written."""

    target: Target | None  # hosts from DEPLOY_HOST (alone, or filling in the inventory)
    variables: dict[str, object]
    secrets: list[str]
    private: list[str] = field(default_factory=list)  # masked without a warning
    groups: tuple[str, ...] = ()  # the inventory's groups the DEPLOY_HOST hosts join
    excluded: tuple[str, ...] = ()  # the inventory's placeholder hosts
    ssh_key: str | None = None
    known_hosts: str | None = None
    vault_password: str | None = None
    default_image: str | None = None


ShapeReader = Callable[[Path], Shape]


def prepare(
    request: Request,
    env: Mapping[str, str],
    webhook: str | None,
    read_shape: ShapeReader = inventory_shape,
) -> Prepared:
    """Read and check the inputs (InputError when refused)."""
    deploy_host_set = setting(env, "DEPLOY_HOST") is not None
    target = target_from_env(env) if deploy_host_set or request.inventory is None else None
    shape = read_shape(request.inventory) if request.inventory is not None else Shape((), ())
    excluded = placeholders(dict.fromkeys(shape.hosts), deploy_host_set)
    app_env = parse_app_env(setting(env, "APP_ENV_JSON"))
    login = registry_login_from_env(env)
    variables = extra_vars(request.sha, setting(env, "APP_IMAGE"), app_env, login)
    key = setting(env, "DEPLOY_SSH_KEY")
    known = setting(env, "DEPLOY_KNOWN_HOSTS")
    vault = env.get("ANSIBLE_VAULT_PASSWORD") or None  # not stripped: any byte counts
    return Prepared(
        target=target,
        variables=variables,
        secrets=secret_values(target, app_env, webhook, login.password, vault),
        private=private_values(env),
        groups=shape.groups,
        excluded=excluded,
        ssh_key=target.ssh_key if target else (normalize_key(key) if key else None),
        known_hosts=target.known_hosts if target else (known.strip() + "\n" if known else None),
        vault_password=vault,
        default_image=setting(env, "APP_IMAGE_DEFAULT"),
    )


def run_ident(action: str, now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{action}-{secrets.token_hex(3)}"


def write_private(path: Path, text: str) -> Path:
    """A file only the current user can read (created 0600, never wider)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


VAULT_PASSWORD_FILE = Path("secrets") / "vault-password"
CONTROL_DIR = Path("cp")


def write_private_data(private: Path, request: Request, prepared: Prepared) -> list[Path]:
    """Fill the private data dir; return the inventory sources to use."""
    write_private(private / "env" / "extravars", extravars_text(prepared.variables))
    (private / CONTROL_DIR).mkdir(mode=0o700)
    if prepared.ssh_key:
        write_private(private / "ssh" / "id", prepared.ssh_key)
    if prepared.known_hosts:
        write_private(private / "ssh" / "known_hosts", prepared.known_hosts)
    if prepared.vault_password is not None:
        write_private(private / VAULT_PASSWORD_FILE, prepared.vault_password)
    sources = [request.inventory.resolve()] if request.inventory is not None else []
    if prepared.default_image is not None:
        # First, as an inventory file's group vars: the inventory's own
        # group_vars/all and any later source set app_image over it.
        defaults = {"all": {"vars": {"app_image": prepared.default_image}}}
        sources.insert(0, write_private(private / "defaults.json", json.dumps(defaults)))
    if prepared.target is not None:
        inventory = inventory_for(prepared.target, prepared.groups)
        sources.append(write_private(private / "inventory.json", json.dumps(inventory, indent=2)))
    return sources


def connection_env(private: Path, prepared: Prepared) -> dict[str, str]:
    key = private / "ssh" / "id" if prepared.ssh_key else None
    known = private / "ssh" / "known_hosts" if prepared.known_hosts else None
    insecure = prepared.target is not None and prepared.target.insecure
    return ssh_env(key, known, insecure, private / CONTROL_DIR)


def runner_kwargs(
    request: Request, private: Path, sources: Sequence[Path], ident: str, prepared: Prepared
) -> dict[str, Any]:
    """Arguments of ansible_runner.run: no secret value among them."""
    cmdline = [arg for f in request.extra_vars_files for arg in ("-e", f"@{f.resolve()}")]
    if prepared.vault_password is not None:
        cmdline += ["--vault-password-file", str(private / VAULT_PASSWORD_FILE)]
    kwargs: dict[str, Any] = {
        "private_data_dir": str(private),
        "project_dir": str(ROOT),
        "playbook": str(PLAYBOOKS / f"{request.action}.yml"),
        "inventory": str(sources[0]) if len(sources) == 1 else [str(s) for s in sources],
        "artifact_dir": str(request.artifacts_dir.resolve()),
        "ident": ident,
        "quiet": True,
        # how often ansible-runner looks at cancel_callback (seconds)
        "settings": {"pexpect_timeout": 1},
    }
    if cmdline:
        kwargs["cmdline"] = shlex.join(cmdline)
    limit = limit_for(request.limit, prepared.excluded)
    if limit:
        kwargs["limit"] = limit
    return kwargs


def close_masters(control_dir: Path) -> None:
    """Tell each SSH master under control_dir to exit (ControlPersist would keep
    an authenticated connection open after the run)."""
    if not control_dir.is_dir():
        return
    for socket_path in control_dir.iterdir():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "cdrunner-cleanup"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=5,
                check=False,
            )


def clean_up(private: Path) -> None:
    """Masters closed, then the private data dir (key, vault password, sockets) removed."""
    close_masters(private / CONTROL_DIR)
    shutil.rmtree(private, ignore_errors=True)


class Cancel:
    """SIGTERM, SIGINT, SIGHUP during a run: clean up at once (the key and the
    sockets are gone before anything else), then let ansible-runner stop the
    playbook (cancel_callback). A second signal ends cdrunner right away."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self, private: Path) -> None:
        self.private = private
        self.signum: int | None = None

    def __call__(self) -> bool:  # ansible-runner's cancel_callback
        return self.signum is not None

    def handle(self, signum: int, _frame: object) -> None:
        first = self.signum is None
        self.signum = signum
        clean_up(self.private)
        if not first:
            raise SystemExit(128 + signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        saved = {s: signal.signal(s, self.handle) for s in self.SIGNALS}
        try:
            yield
        finally:
            for signum, handler in saved.items():
                signal.signal(signum, handler)


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ replaced for the duration (ansible-runner seeds the
    playbook's environment from it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Printer:
    """The live output: one line per task and host, secrets masked."""

    def __init__(self, out: TextIO, secrets: Sequence[str], host_width: int) -> None:
        self.out = out
        self.secrets = list(secrets)
        self.host_width = host_width
        self.events: list[Event] = []

    def __call__(self, raw: Mapping[str, Any]) -> bool:
        event = simplify(raw)
        self.events.append(event)
        self.host_width = max(self.host_width, len(event.host))
        line = format_event(event, self.host_width)
        if line is not None:
            print(mask(line, self.secrets), file=self.out, flush=True)
        return True  # ansible-runner keeps the event in job_events


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


RunFunction = Callable[..., Any]


def execute(
    request: Request,
    env: Mapping[str, str],
    webhook: str | None,
    out: TextIO,
    run: RunFunction | None = None,
    read_shape: ShapeReader = inventory_shape,
) -> Outcome:
    """Run the playbook; the private data dir exists only during the run."""
    prepared = prepare(request, env, webhook, read_shape)
    if run is None:
        import ansible_runner

        run = ansible_runner.run
    ident = run_ident(request.action, datetime.now(UTC))
    printer = Printer(out, [*prepared.secrets, *prepared.private], 12)
    check_keys = prepared.target is None or not prepared.target.insecure
    playbook_env = runner_env(env, Path(sys.executable).parent, ANSIBLE_CFG, check_keys)
    private = Path(tempfile.mkdtemp(prefix="cdrunner-"))  # mode 0700
    cancel = Cancel(private)
    try:
        with cancel.installed():
            sources = write_private_data(private, request, prepared)
            kwargs = runner_kwargs(request, private, sources, ident, prepared)
            with environment({**playbook_env, **connection_env(private, prepared)}):
                result = run(event_handler=printer, cancel_callback=cancel, **kwargs)
        rc, status = int(result.rc), str(result.status)
    finally:
        clean_up(private)
    artifact_path = request.artifacts_dir / ident
    leaked = scrub_artifacts(artifact_path, prepared.secrets)
    mask_quietly(artifact_path, prepared.private)
    redact_checksums(artifact_path)
    if cancel.signum is not None:
        print(f"cdrunner: stopped by signal {cancel.signum}", file=out, flush=True)
    if rc != 0 and not any(e.stats for e in printer.events):
        visible = [*prepared.secrets, *prepared.private]
        print(mask(tail(artifact_path / "stdout"), visible), file=out, flush=True)
    return Outcome(rc, status, artifact_path, printer.events, leaked)
