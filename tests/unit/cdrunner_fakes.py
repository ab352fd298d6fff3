"""Raw ansible-runner events (as given to event_handler) and a fake
ansible_runner.run, for the cdrunner unit tests."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ansible.parsing.dataloader import DataLoader
from ansible.template import is_trusted_as_template

T0 = "2026-01-01T10:00:00+00:00"
SHA_A = "a" * 40
SHA_B = "b" * 40
# The play's name appears only as context: cdrunner decides nothing from names.
VALIDATION_PLAY = "Validate the request (controller only, no host is contacted)"
# A test key (not a real one) and a known_hosts line, for DEPLOY_SSH_KEY and
# DEPLOY_KNOWN_HOSTS.
KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBcdGhpcyBpcyBub3QgYSByZWFsIGtleSwganVzdCBhIHRlc3QAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
KNOWN = "[10.0.0.5]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKey"


def at(seconds: float) -> str:
    whole = int(seconds)
    micro = round((seconds - whole) * 1_000_000)
    return f"2026-01-01T10:{whole // 60:02d}:{whole % 60:02d}.{micro:06d}+00:00"


def raw(
    event: str,
    host: str = "web1",
    task: str = "Do something",
    play: str = "Deploy",
    role: str = "",
    action: str = "ansible.builtin.command",
    res: Mapping[str, Any] | None = None,
    duration: float | None = 0.5,
    created: str = T0,
    ignore_errors: bool | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "play": play,
        "task": task,
        "resolved_action": action,
        "host": host,
        "duration": duration,
        "ignore_errors": ignore_errors,
    }
    if role:
        data["role"] = role
    if res is not None:
        data["res"] = dict(res)
    return {"event": event, "created": created, "event_data": data}


def ok(host: str = "web1", task: str = "Do something", **kw: Any) -> dict[str, Any]:
    kw.setdefault("res", {"changed": False, "msg": "fine"})
    return raw("runner_on_ok", host, task, **kw)


def failed(
    host: str = "web1", task: str = "Do something", msg: str = "boom", **kw: Any
) -> dict[str, Any]:
    return raw("runner_on_failed", host, task, res={"msg": msg, "changed": False}, **kw)


def unreachable(host: str = "web1", msg: str = "Failed to connect", **kw: Any) -> dict[str, Any]:
    return raw("runner_on_unreachable", host, "Take the deploy lock", res={"msg": msg}, **kw)


def refused(host: str = "web1", msg: str = "Refused before any host was touched") -> dict[str, Any]:
    """The failed assert of the input check (its verdict is in stats: rejected())."""
    return failed(host, "Refuse bad input", msg, play=VALIDATION_PLAY, role="app_deploy")


def spec_refused(host: str = "web1", **kw: Any) -> dict[str, Any]:
    """A failed validate_argument_spec result, as Ansible reports it."""
    kw.setdefault("play", VALIDATION_PLAY)
    res = {
        "failed": True,
        "msg": "Validation of arguments failed:\nmissing required arguments: app_image",
        "argument_errors": ["missing required arguments: app_image"],
        "validate_args_context": {"argument_spec_name": "validate", "name": "app_deploy"},
    }
    action = "ansible.builtin.validate_argument_spec"
    return raw("runner_on_failed", host, "Validating arguments", res=res, action=action, **kw)


def verdict(accepted: bool, *errors: str) -> dict[str, Any]:
    """melk_validation.<host>, as the validate entry point emits it."""
    return {"accepted": accepted, "errors": list(errors)}


def rejected(*errors: str) -> dict[str, Any]:
    return verdict(False, *(errors or ("sha 'abc' is invalid",)))


ACCEPTED = verdict(True)


def record(
    before: str | None,
    after: str | None,
    outcome: str = "succeeded",
    rolled_back: bool = False,
    health: str = "healthy",
    message: str = "",
) -> dict[str, Any]:
    return {
        "before": before,
        "after": after,
        "outcome": outcome,
        "rolled_back": rolled_back,
        "health": health,
        "message": message,
    }


def stats(
    failures: Mapping[str, int] | None = None,
    dark: Mapping[str, int] | None = None,
    ok_hosts: Sequence[str] = ("web1",),
    releases: Mapping[str, Any] | None = None,
    created: str = T0,
    validation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    custom: dict[str, Any] = {}
    if validation is not None:
        custom["melk_validation"] = dict(validation)
    if releases is not None:
        custom["melk_release"] = dict(releases)
    data = {
        "failures": dict(failures or {}),
        "dark": dict(dark or {}),
        "ok": {h: 3 for h in ok_hosts},
        "rescued": {},
        "artifact_data": custom,
    }
    return {"event": "playbook_on_stats", "created": created, "event_data": data}


@dataclass
class FakeRunner:
    """Stands in for ansible_runner.run: feeds events to the handler and writes
    artifacts the way ansible-runner does (command holds the environment)."""

    events: Sequence[Mapping[str, Any]]
    rc: int = 0
    status: str = "successful"
    stdout: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    private_files: dict[str, str] = field(default_factory=dict)
    private_modes: dict[str, int] = field(default_factory=dict)

    def __call__(self, **kwargs: Any) -> SimpleNamespace:
        self.kwargs = kwargs
        self.environ = dict(os.environ)
        private = Path(kwargs["private_data_dir"])
        for path in private.rglob("*"):
            rel = str(path.relative_to(private))
            self.private_modes[rel] = stat.S_IMODE(path.stat().st_mode)
            if path.is_file():
                self.private_files[rel] = path.read_text()
        self.private_modes["."] = stat.S_IMODE(private.stat().st_mode)
        artifacts = Path(kwargs["artifact_dir"]) / kwargs["ident"]
        (artifacts / "job_events").mkdir(parents=True)
        command = {"command": ["ansible-playbook", kwargs["playbook"]], "env": dict(os.environ)}
        (artifacts / "command").write_text(json.dumps(command))
        (artifacts / "stdout").write_text(self.stdout)
        for n, event in enumerate(self.events):
            kwargs["event_handler"](dict(event))
            (artifacts / "job_events" / f"{n}.json").write_text(json.dumps(event))
        return SimpleNamespace(rc=self.rc, status=self.status)


def ansible_extra_vars(text: str, directory: Path) -> dict[str, Any]:
    """An extra vars file as ansible-playbook loads it for -e @FILE (trusted as
    templates unless tagged !unsafe)."""
    path = directory / "extravars"
    path.write_text(text, encoding="utf-8")
    loaded = DataLoader().load_from_file(str(path), cache="none", trusted_as_template=True)
    return dict(loaded)


def templatable_strings(value: object) -> list[str]:
    """The strings in value (keys aside) that Ansible would template."""
    if isinstance(value, str):
        return [value] if is_trusted_as_template(value) else []
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in templatable_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in templatable_strings(v)]
    return []
