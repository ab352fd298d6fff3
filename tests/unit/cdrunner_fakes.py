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

from cdrunner.outcome import VALIDATION_PLAY

T0 = "2026-01-01T10:00:00+00:00"
SHA_A = "a" * 40
SHA_B = "b" * 40


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
    return failed(host, "Refuse bad input", msg, play=VALIDATION_PLAY, role="app_deploy")


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
) -> dict[str, Any]:
    data = {
        "failures": dict(failures or {}),
        "dark": dict(dark or {}),
        "ok": {h: 3 for h in ok_hosts},
        "rescued": {},
        "artifact_data": {"melk_release": dict(releases)} if releases is not None else {},
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
