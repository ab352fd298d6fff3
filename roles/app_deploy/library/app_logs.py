#!/usr/bin/python
"""Ansible module app_logs: the last lines of a release's container log (playbooks/logs.yml).

docker logs writes the container's stdout and stderr on two streams; this module asks for
docker's timestamps and merges the two in time order (melk_docker.merge_logs), so a log
reads as the app wrote it. It only reads.

This file runs on the managed host, whose Python may be older than the controller's: keep
it to syntax and library calls of Python 3.8 (new-style types only inside annotations).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.melk_docker import failure, logs_argv, merge_logs, missing
from ansible.module_utils.melk_module import Runner, finish, module_runner

DOCUMENTATION = r"""
module: app_logs
short_description: The last lines of a container's log, stdout and stderr in time order
description:
  - Runs C(docker logs --timestamps --tail) O(lines) (and C(--since) O(since)) for the
    container O(name) and returns its lines, the container's stdout and stderr merged in
    time order, each starting with docker's timestamp.
  - Changes nothing; a container that does not exist is reported with RV(found) false.
options:
  name:
    description: Container name, for example C(melk-ai-blue).
    type: str
    required: true
  lines:
    description: How many lines, from the end of the log.
    type: int
    default: 100
  since:
    description:
      - Only lines newer than this, as C(docker logs --since) takes it (C(10m), C(2h), a
        timestamp).
    type: str
attributes:
  check_mode:
    description: Reads only, so it runs in check mode too.
    support: full
author:
  - melk-ai deploy maintainers
"""

EXAMPLES = r"""
- name: Read the serving release's last 100 lines
  app_logs:
    name: melk-ai-blue
    lines: 100
    since: 10m
  register: logs
"""

RETURN = r"""
lines:
  description: The log lines, oldest first, each starting with docker's timestamp.
  returned: always
  type: list
  elements: str
found:
  description: Whether the container exists.
  returned: always
  type: bool
"""

ARGUMENT_SPEC: dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "lines": {"type": "int", "default": 100},
    "since": {"type": "str"},
}


def run(params: Mapping[str, Any], runner: Runner) -> dict[str, Any]:
    """The log of params['name']; a result for exit_json (failed=True to fail)."""
    name = str(params["name"])
    lines = int(params.get("lines") or 100)
    if lines < 1:
        return {"failed": True, "msg": f"lines must be a positive number, not {lines}"}
    rc, out, err = runner(logs_argv(name, lines, params.get("since") or None))
    if rc != 0 and missing(err):
        return {"changed": False, "found": False, "lines": []}
    if rc != 0:
        return {
            "failed": True,
            "changed": False,
            "msg": failure(f"reading the log of {name}", rc, err),
        }
    return {"changed": False, "found": True, "lines": merge_logs(out, err)}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    finish(module, run(dict(module.params), module_runner(module)))


if __name__ == "__main__":
    main()
