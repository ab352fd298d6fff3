"""The glue between AnsibleModule and the modules' pure parts: one Runner, one way to finish.

Every module of the project has one shape: ARGUMENT_SPEC at module level, the inputs go
to a decision that is unit-tested without Ansible, and main() only builds the
AnsibleModule, hands it to that code through a Runner, and finishes with finish().
Shipped to the managed host with each module (see melk_files.py): Python 3.8 syntax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, Protocol


class Runner(Protocol):
    """Runs one command line (no shell) and gives (exit code, stdout, stderr)."""

    def __call__(self, argv: Sequence[str]) -> tuple[int, str, str]: ...


def module_runner(module: Any) -> Runner:
    """A Runner over AnsibleModule.run_command."""

    def run(argv: Sequence[str]) -> tuple[int, str, str]:
        rc, out, err = module.run_command(list(argv))
        return int(rc), str(out), str(err)

    return run


def one_line(out: str, err: str) -> str:
    """A command's message: its stderr, else its stdout, on one line."""
    return " ".join((err.strip() or out.strip()).split())


def finish(module: Any, result: Mapping[str, Any]) -> NoReturn:
    """End the module with result: its 'warnings' are warned, 'failed' fails it."""
    rest = dict(result)
    for warning in rest.pop("warnings", None) or []:
        module.warn(warning)
    if rest.pop("failed", False):
        module.fail_json(**rest)
    module.exit_json(**rest)
    raise SystemExit(0)  # exit_json exits; this line is for the type checker
