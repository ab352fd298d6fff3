#!/usr/bin/python
"""Ansible module proxy_upstream: point the edge at another release in one step.

The app's switch file is an nftables script (filter_plugins/edge_upstream.py says what it
holds): the new file is checked on its own (nft -c), put in place atomically and applied
(nft -f, one transaction that replaces the app's chain); a failure puts the old file back,
so the kernel's rule and the file always agree (the next deploy reads from the file what
serves). One task instead of a template with validate: and a command: two round trips less.

This file runs on the managed host, whose Python may be older than the controller's: keep
it to syntax and library calls of Python 3.8 (new-style types only inside annotations).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.melk_files import read_text, remove_file, write_atomic
from ansible.module_utils.melk_module import Runner, finish, module_runner, one_line

DOCUMENTATION = r"""
module: proxy_upstream
short_description: Point the edge at another release, checked, atomically, in one transaction
description:
  - Does nothing when O(path) already holds O(content).
  - Otherwise checks the new content on its own with O(validate), replaces O(path) atomically
    (mode 0644), checks the whole live configuration with O(test_command) when given, and
    applies it with O(reload_command) (for the nftables switch, C(nft -f) on the file, one
    transaction; connections already open keep their destination).
  - If the check or the apply fails, the old file is put back and the module fails with the
    command's message; traffic keeps going where it went.
options:
  path:
    description: The switch file (an nftables script for the edge's switch).
    type: path
    required: true
  content:
    description: What the file should hold (rendered by the caller from the role's template).
    type: str
    required: true
  validate:
    description: Command that checks a candidate file on its own; C(%s) is its path.
    type: str
    required: true
  test_command:
    description: Command that checks the whole live configuration after the file is in place;
      empty for none.
    type: list
    elements: str
    default: []
  reload_command:
    description: Command that applies the file (C(nft -f) on O(path) for the edge's switch).
    type: list
    elements: str
    required: true
attributes:
  check_mode:
    description: Reports whether the file would change and changes nothing.
    support: full
author:
  - melk-ai deploy maintainers
"""

EXAMPLES = r"""
- name: Point the front address at melk-ai-green
  proxy_upstream:
    path: /etc/nginx/edge-proxy/melk-ai.upstream
    content: "{{ lookup('ansible.builtin.template', 'upstream.j2') }}"
    validate: nft -c -f %s
    reload_command: [nft, -f, /etc/nginx/edge-proxy/melk-ai.upstream]
  become: true
"""

RETURN = r"""
reloaded:
  description: Whether the file was applied (O(reload_command) ran).
  returned: always
  type: bool
applied_at:
  description:
    - When the file was applied, in seconds since the epoch on the managed host's clock
      (when O(reload_command) succeeded), where a watch of the new target's window starts
      (health_probe's C(since)).
  returned: when reloaded
  type: float
"""


ARGUMENT_SPEC: dict[str, Any] = {
    "path": {"type": "path", "required": True},
    "content": {"type": "str", "required": True},
    "validate": {"type": "str", "required": True},
    "test_command": {"type": "list", "elements": "str", "default": []},
    "reload_command": {"type": "list", "elements": "str", "required": True},
}

# what switch() does, decided from the file as it is and the parameters
REFUSE = "refuse"  # validate does not name the candidate file
KEEP = "keep"  # the file already holds the content
REPORT = "report"  # check mode: say it would change
SWITCH = "switch"  # check, replace, check the whole configuration, apply


def decide(old: str | None, content: str, validate: str, check_mode: bool) -> str:
    """What to do, given the file's text (None: no file) and the wanted content."""
    if "%s" not in validate:
        return REFUSE
    if old == content:
        return KEEP
    return REPORT if check_mode else SWITCH


def restore(path: str, old: str | None) -> None:
    """Put the file back as it was (no file when there was none)."""
    if old is None:
        remove_file(path)
    else:
        write_atomic(path, old)


def refused(msg: str) -> dict[str, Any]:
    """A failed switch: nothing changed, nothing applied."""
    return {"failed": True, "changed": False, "reloaded": False, "msg": msg}


def check_candidate(path: str, content: str, validate: str, runner: Runner) -> tuple[int, str]:
    """Run validate on content in a temporary file beside path: (exit code, message)."""
    handle, candidate = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".proxy-upstream-check-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(content)
        os.chmod(candidate, 0o644)
        rc, out_text, err = runner(validate.replace("%s", candidate).split())
    finally:
        os.unlink(candidate)
    return rc, one_line(out_text, err)


def switch(
    path: str,
    content: str,
    validate: str,
    test_command: Sequence[str],
    reload_command: Sequence[str],
    check_mode: bool,
    runner: Runner,
    wall: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Do the switch; a result for exit_json, with failed=True to fail."""
    old = read_text(path)
    action = decide(old, content, validate, check_mode)
    if action == REFUSE:
        return refused("validate must contain %s")
    if action in (KEEP, REPORT):
        return {"changed": action == REPORT, "reloaded": False}
    rc, message = check_candidate(path, content, validate, runner)
    if rc != 0:
        return refused(f"edge proxy: the new switch file was refused, nothing changed: {message}")
    write_atomic(path, content)
    if test_command:
        rc, out_text, err = runner(list(test_command))
        if rc != 0:
            restore(path, old)
            return refused(
                "edge proxy: the configuration on this host is invalid, so the switch was not "
                f"made and the old switch file is back; the check says: {one_line(out_text, err)}"
            )
    rc, out_text, err = runner(list(reload_command))
    if rc != 0:
        restore(path, old)
        return refused(
            "edge proxy: applying the switch failed, the old switch file is back: "
            f"{one_line(out_text, err)}"
        )
    return {"changed": True, "reloaded": True, "applied_at": wall()}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    result = switch(
        params["path"],
        params["content"],
        params["validate"],
        params["test_command"],
        params["reload_command"],
        module.check_mode,
        module_runner(module),
    )
    finish(module, result)


if __name__ == "__main__":
    main()
