"""Callback plugin become_audit: one JSON line per task result with whether the
task ran with become (sudo), for the fault suite's least-privilege check.

Enabled only by the fault suite (ANSIBLE_CALLBACKS_ENABLED=become_audit); the
file is MELK_BECOME_AUDIT. Records names and flags, never arguments or results.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: become_audit
type: aggregate
short_description: record which tasks ran with become
description: >-
  One JSON line per task result (task, role, action, become, status)
  appended to the file named by MELK_BECOME_AUDIT.
"""


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "become_audit"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get("MELK_BECOME_AUDIT", "")
        self._playbook = ""

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._playbook = os.path.basename(str(playbook._file_name))

    def _record(self, result: Any, status: str) -> None:
        if not self._path:
            return
        task = result._task
        fields = result._task_fields or {}
        role = task._role.get_name() if task._role else ""
        line = {
            "playbook": self._playbook,
            "host": result._host.get_name(),
            "task": task.get_name(),
            "role": role,
            "action": task.action,
            "become": bool(fields.get("become")),
            "status": status,
        }
        with open(self._path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, "failed")
