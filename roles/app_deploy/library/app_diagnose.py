#!/usr/bin/python
"""Ansible module app_diagnose: why a new release failed its health gate or public watch.

When the gate or the watch fails, app_deploy's rescue runs this before it removes the
failed container: it reads the container's state (melk_docker.state_argv: four fields,
never its environment) and its last log lines, masks the values of app.env in them and
in the probes the healthcheck role kept, and names the cause (cause(), a pure function):
the container did not start, exited, restarted, answered a status that is not 2xx, or gave
no answer. The report is what a person reads to act on it.

This file runs on the managed host, whose Python may be older than the controller's: keep
it to syntax and library calls of Python 3.8 (new-style types only inside annotations).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.melk_docker import (
    created_argv,
    die_events_argv,
    logs_argv,
    masked,
    merge_logs,
    parse_last_exit,
    parse_state,
    read_env_values,
    state_argv,
)
from ansible.module_utils.melk_module import Runner, finish, module_runner

DOCUMENTATION = r"""
module: app_diagnose
short_description: Say why a release failed its health check, with its state, log and probes
description:
  - Reads the state of the container O(name) (running, restart count, status, exit code) and
    its last O(lines) log lines, and returns RV(cause), RV(message) and RV(report): the cause,
    the container's state, the last O(probes) and the log, for a person to read.
  - A container that restarted and runs again reports exit code 0 to C(docker inspect); the
    code it last exited with is then read from the engine's C(die) events since it was created.
  - The values of O(env_file) (4 characters or longer) are masked in all of it; when the file
    cannot be read, the log and the probes' bodies are left out.
  - Changes nothing.
options:
  name:
    description: The new release's container, for example C(melk-ai-green).
    type: str
    required: true
  probes:
    description:
      - The last probes, as the healthcheck role's health_probe returns them (C(status),
        C(at), C(location), C(body), C(error)), oldest first.
    type: list
    elements: dict
    default: []
  url:
    description: The URL that was probed, named in the message.
    type: str
    default: ""
  env_file:
    description: The app's env file on the host, whose values are masked.
    type: path
  lines:
    description: How many of the log's last lines to show.
    type: int
    default: 50
attributes:
  check_mode:
    description: Reads only, so it runs in check mode too.
    support: full
author:
  - melk-ai deploy maintainers
"""

EXAMPLES = r"""
- name: Say why the new release failed
  app_diagnose:
    name: melk-ai-green
    probes: "{{ healthcheck_result.probes }}"
    url: http://127.0.0.1:18002/health
    env_file: /opt/melk-ai/app.env
  register: diagnosis
"""

RETURN = r"""
cause:
  description: C(did not start), C(exited), C(restarted), C(answered non-2xx) or C(timed out).
  returned: always
  type: str
message:
  description: One sentence naming the cause.
  returned: always
  type: str
state:
  description: The container's state (running, restarts, status, exit_code); empty when it is gone.
  returned: always
  type: dict
logs:
  description: The container's last O(lines) log lines, stdout and stderr in time order, masked.
  returned: always
  type: list
  elements: str
report:
  description: The message, the container's state, the probes and the log, a line each.
  returned: always
  type: list
  elements: str
"""

ARGUMENT_SPEC: dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "probes": {"type": "list", "elements": "dict", "default": []},
    "url": {"type": "str", "default": ""},
    "env_file": {"type": "path"},
    "lines": {"type": "int", "default": 50},
}

NO_ANSWER = -1


def _exit_code(state: Mapping[str, Any]) -> str:
    code = state.get("exit_code")
    return "?" if code is None else str(code)


def cause(
    probes: Sequence[Mapping[str, Any]], state: Mapping[str, Any], url: str = ""
) -> tuple[str, str]:
    """(cause, message) from the last probes and the container's state (parse_state's).

    The container comes first: a release that is gone, never ran, exited or restarted
    explains any probe; a running release that never restarted is judged by its last
    probe: a status that is not 2xx, or no answer."""
    where = f" to {url}" if url else ""
    if not state:
        return "did not start", "the new release did not start: its container does not exist"
    status = str(state.get("status", ""))
    restarts = int(state.get("restarts", 0) or 0)
    if status == "created":
        return "did not start", (
            "the new release did not start: its container was created but never ran"
        )
    if restarts > 0 or status == "restarting":
        return "restarted", (
            f"the new release restarted {restarts} time{'s' if restarts != 1 else ''} "
            f"(it is {status}; last exit code {_exit_code(state)})"
        )
    if not state.get("running"):
        return "exited", f"the new release exited with exit code {_exit_code(state)} ({status})"
    if not probes:
        return "timed out", f"the new release runs but was not probed{where}"
    last = probes[-1]
    code = int(last.get("status", NO_ANSWER))
    if code == NO_ANSWER:
        error = str(last.get("error") or "no answer")
        return "timed out", f"the new release runs but gave no answer{where} in time ({error})"
    if 200 <= code < 300:
        return "timed out", f"the new release answered HTTP {code}{where} too late"
    location = str(last.get("location") or "")
    moved = f", Location: {location}" if location else ""
    return "answered non-2xx", f"the new release answered HTTP {code}{where}{moved}"


def probe_line(probe: Mapping[str, Any]) -> str:
    """One probe, as the report shows it."""
    code = int(probe.get("status", NO_ANSWER))
    head = f"{probe.get('at', '?')} " + (
        f"HTTP {code}" if code != NO_ANSWER else f"no answer ({probe.get('error') or '?'})"
    )
    if probe.get("location"):
        head += f" Location: {probe['location']}"
    body = " ".join(str(probe.get("body") or "").split())
    return head + (f" body: {body}" if body else "")


def state_line(state: Mapping[str, Any]) -> str:
    if not state:
        return "container: gone"
    return (
        f"container: {state.get('status', '?')}, exit code {_exit_code(state)}, "
        f"restarted {state.get('restarts', '?')} times"
    )


def masked_probes(
    probes: Sequence[Mapping[str, Any]], values: Sequence[str] | None
) -> list[dict[str, Any]]:
    """The probes with values masked in their text; None: their text is left out."""
    shown = []
    for probe in probes:
        item = dict(probe)
        for key in ("location", "body", "error"):
            text = str(item.get(key) or "")
            item[key] = "" if values is None and key != "error" else masked(text, values or [])
        shown.append(item)
    return shown


def report(
    message: str,
    state: Mapping[str, Any],
    probes: Sequence[Mapping[str, Any]],
    logs: Sequence[str],
    lines: int,
) -> list[str]:
    """The lines a person reads: the cause, the state, the probes, the log."""
    out = [f"cause: {message}", state_line(state)]
    out += [f"last probes ({len(probes)}):"] + [f"  {probe_line(p)}" for p in probes]
    out += [f"last {lines} log lines ({len(logs)}):"] + [f"  {line}" for line in logs]
    return out


def last_exit_code(name: str, runner: Runner, wall: Callable[[], float] = time.time) -> int | None:
    """The code the container last exited with, from the engine's die events since it
    was created until now; None when they cannot be read."""
    rc, created, _err = runner(created_argv(name))
    if rc != 0 or not created.strip():
        return None
    rc, out, _err = runner(die_events_argv(name, created.strip(), wall()))
    return parse_last_exit(out) if rc == 0 else None


def run(
    params: Mapping[str, Any], runner: Runner, wall: Callable[[], float] = time.time
) -> dict[str, Any]:
    """Read the container and its log, and judge; a result for exit_json."""
    name = str(params["name"])
    lines = max(int(params.get("lines") or 50), 1)
    rc, out, _err = runner(state_argv(name))
    state = parse_state(rc, out)
    if state and state["status"] == "running" and state["restarts"] > 0:
        # Running again after a restart: docker says exit code 0 (while "restarting"
        # it keeps the code); the code it last exited with is in its die events.
        code = last_exit_code(name, runner, wall)
        state["exit_code"] = code if code is not None else state["exit_code"]
    values: list[str] | None
    values, why = read_env_values(params.get("env_file"))
    warnings = []
    if why:
        values = None
        warnings.append(f"the log and the probes' bodies are not shown: {why}")
    logs: list[str] = []
    if state and values is not None:
        rc, out, err = runner(logs_argv(name, lines, None))
        if rc == 0:
            logs = [masked(line, values) for line in merge_logs(out, err)][-lines:]
    probes = masked_probes(params.get("probes") or [], values)
    kind, message = cause(probes, state, str(params.get("url") or ""))
    return {
        "changed": False,
        "cause": kind,
        "message": message,
        "state": state,
        "logs": logs,
        "report": report(message, state, probes, logs, lines),
        "warnings": warnings,
    }


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    finish(module, run(dict(module.params), module_runner(module)))


if __name__ == "__main__":
    main()
