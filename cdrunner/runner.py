"""The run itself, through ansible-runner's Python API.

Where secrets go: the extra vars (app_env, the registry password), the SSH
key, the known_hosts lines and the generated inventory are written, mode
0600, into a private data dir that is a fresh temporary directory (mode
0700), removed after the run.
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
import sys
import tempfile
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
    parse_app_env,
    registry_login_from_env,
    runner_env,
    secret_values,
    setting,
    target_from_env,
)
from cdrunner.redact import mask, scrub_artifacts

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

    target: Target | None
    variables: dict[str, object]
    secrets: list[str]


def prepare(request: Request, env: Mapping[str, str], webhook: str | None) -> Prepared:
    """Read and check the inputs (InputError when refused)."""
    target = None if request.inventory is not None else target_from_env(env)
    app_env = parse_app_env(setting(env, "APP_ENV_JSON"))
    login = registry_login_from_env(env)
    variables = extra_vars(request.sha, setting(env, "APP_IMAGE"), app_env, login)
    return Prepared(target, variables, secret_values(target, app_env, webhook, login.password))


def run_ident(action: str, now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{action}-{secrets.token_hex(3)}"


def write_private(path: Path, text: str) -> Path:
    """A file only the current user can read (created 0600, never wider)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def write_private_data(private: Path, request: Request, prepared: Prepared) -> Path:
    """Fill the private data dir; return the inventory to use."""
    write_private(private / "env" / "extravars", extravars_text(prepared.variables))
    if request.inventory is not None:
        return request.inventory.resolve()
    target = prepared.target
    if target is None:
        raise RuntimeError("no inventory and no target: prepare() should have refused")
    key_file = write_private(private / "ssh" / "id", target.ssh_key) if target.ssh_key else None
    known_file = (
        write_private(private / "ssh" / "known_hosts", target.known_hosts)
        if target.known_hosts
        else None
    )
    inventory = inventory_for(target, key_file, known_file)
    return write_private(private / "inventory.json", json.dumps(inventory, indent=2))


def runner_kwargs(request: Request, private: Path, inventory: Path, ident: str) -> dict[str, Any]:
    """Arguments of ansible_runner.run: no secret value among them."""
    cmdline = [arg for f in request.extra_vars_files for arg in ("-e", f"@{f.resolve()}")]
    kwargs: dict[str, Any] = {
        "private_data_dir": str(private),
        "project_dir": str(ROOT),
        "playbook": str(PLAYBOOKS / f"{request.action}.yml"),
        "inventory": str(inventory),
        "artifact_dir": str(request.artifacts_dir.resolve()),
        "ident": ident,
        "quiet": True,
    }
    if cmdline:
        kwargs["cmdline"] = shlex.join(cmdline)
    if request.limit:
        kwargs["limit"] = request.limit
    return kwargs


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
) -> Outcome:
    """Run the playbook; the private data dir exists only during the run."""
    prepared = prepare(request, env, webhook)
    if run is None:
        import ansible_runner

        run = ansible_runner.run
    ident = run_ident(request.action, datetime.now(UTC))
    hosts = prepared.target.hosts if prepared.target else ()
    printer = Printer(out, prepared.secrets, max([12, *map(len, hosts)]))
    check_keys = prepared.target is None or not prepared.target.insecure
    playbook_env = runner_env(env, Path(sys.executable).parent, ANSIBLE_CFG, check_keys)
    private = Path(tempfile.mkdtemp(prefix="cdrunner-"))  # mode 0700
    try:
        inventory = write_private_data(private, request, prepared)
        kwargs = runner_kwargs(request, private, inventory, ident)
        with environment(playbook_env):
            result = run(event_handler=printer, **kwargs)
        rc, status = int(result.rc), str(result.status)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    artifact_path = request.artifacts_dir / ident
    leaked = scrub_artifacts(artifact_path, prepared.secrets)
    if rc != 0 and not any(e.stats for e in printer.events):
        print(mask(tail(artifact_path / "stdout"), prepared.secrets), file=out, flush=True)
    return Outcome(rc, status, artifact_path, printer.events, leaked)
