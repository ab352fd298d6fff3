"""Run a module's main() in this process, as Ansible would on the host, and read its result.

Ansible's own unit-test helper (ansible.module_utils.testing.patch_module_args) hands the
arguments to AnsibleModule; main() prints its JSON result and exits, both caught here.
Once another test has imported Ansible's controller code, module_utils believes it runs
on the controller and prints warnings instead of returning them: for the module's run,
it is told otherwise, as it is on a managed host.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from collections.abc import Callable, Sequence
from typing import Any
from unittest import mock

from ansible.module_utils import _internal
from ansible.module_utils.common import warnings
from ansible.module_utils.testing import patch_module_args


def run_module(main: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
    """The result main() prints for args; 'rc' is its exit code (1 when it failed),
    'warnings' the text of each warning."""
    out = io.StringIO()
    on_the_host = mock.patch.object(_internal, "is_controller", False)
    # A module's warnings are process-wide in module_utils (one module per process on
    # a host): start each run without those of an earlier run in this process.
    fresh_warnings = mock.patch.dict(warnings._global_warnings, clear=True)
    fresh_deprecations = mock.patch.dict(warnings._global_deprecations, clear=True)
    with (
        patch_module_args(args),
        on_the_host,
        fresh_warnings,
        fresh_deprecations,
        contextlib.redirect_stdout(out),
    ):
        try:
            main()
        except SystemExit as done:
            code = done.code
        else:
            raise AssertionError("the module did not exit")
    result: dict[str, Any] = json.loads(out.getvalue())
    result["rc"] = code
    if "warnings" in result:  # ansible-core 2.19 sends each as an event; keep its text
        result["warnings"] = [warning_text(warning) for warning in result["warnings"]]
    return result


def warning_text(warning: Any) -> str:
    """A warning's message, from a plain string or a 2.19 WarningSummary."""
    if isinstance(warning, dict):
        return str(warning["event"]["msg"])
    return str(warning)


def real_docker(argv: Sequence[str]) -> tuple[int, str, str]:
    """The real engine as a module's Runner: the command line run, (rc, stdout, stderr)."""
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


class Docker:
    """A fake docker: answers each command line from a table of (argv prefix, answer),
    and keeps the command lines (Kamal-style: the tests assert them exactly)."""

    def __init__(self, *answers: tuple[list[str], tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        for prefix, answer in self.answers:
            if list(argv[: len(prefix)]) == prefix:
                return answer
        return 0, "", ""
