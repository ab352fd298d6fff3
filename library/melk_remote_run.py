#!/usr/bin/python
# The host's side of action_plugins/melk_remote.py: runs one of the project's modules
# without AnsiballZ. Ansible puts the task's arguments in place of the marker in
# ARGS (a "JSONARGS" module) and pipes this file to the host's Python over the
# task's SSH connection, as it does an AnsiballZ payload. The arguments carry the
# module's source, the project's module_utils it imports (ansible.module_utils.melk_*)
# and its parameters, already checked against its ARGUMENT_SPEC on the controller.
# What is not sent is ansible.module_utils.basic and its ~50 files, which Python
# compiles from source on every AnsiballZ run: about 150 ms of the host's CPU per
# task (make bench's fleet rows pay it five times at once). The module runs with a
# small AnsibleModule that has what the project's modules use (params, check_mode,
# run_command, warn, exit_json, fail_json). Python 3.8 syntax: it runs on the host.
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import traceback
import types
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from typing import Any, ClassVar, NoReturn

ARGS = r"""<<INCLUDE_ANSIBLE_MODULE_JSON_ARGS>>"""
STAND_INS = ("ansible", "ansible.module_utils")  # packages the module_utils live in


def emit(result: dict[str, Any], rc: int) -> NoReturn:
    """The module's result on stdout, where Ansible reads it."""
    print(json.dumps(result, default=str))
    sys.exit(rc)


def decoded(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class AnsibleModule:
    """The part of ansible.module_utils.basic.AnsibleModule the project's modules use."""

    params: ClassVar[dict[str, Any]] = {}
    check_mode: ClassVar[bool] = False

    def __init__(self, argument_spec: Any = None, supports_check_mode: bool = False, **_: Any):
        self._warnings: list[str] = []
        if self.check_mode and not supports_check_mode:
            result = {"skipped": True, "changed": False}
            emit({**result, "msg": "remote module does not support check mode"}, 0)

    def warn(self, warning: str) -> None:
        self._warnings.append(str(warning))

    def run_command(self, args: Sequence[Any], **_: Any) -> tuple[int, str, str]:
        argv = [str(arg) for arg in args]
        try:
            done = subprocess.run(  # the module's own command line, no shell
                argv, stdin=subprocess.DEVNULL, capture_output=True, check=False
            )
        except OSError as error:
            self.fail_json(msg=str(error), rc=error.errno, cmd=" ".join(argv))
        return done.returncode, decoded(done.stdout), decoded(done.stderr)

    def _finish(self, result: dict[str, Any], rc: int) -> NoReturn:
        if self._warnings:
            result["warnings"] = list(result.get("warnings") or []) + self._warnings
        result["invocation"] = {"module_args": self.params}
        emit(result, rc)

    def exit_json(self, **result: Any) -> NoReturn:
        result.setdefault("changed", False)
        self._finish(result, 0)

    def fail_json(self, msg: str, **result: Any) -> NoReturn:
        result.update(failed=True, msg=msg)
        self._finish(result, 1)


class Sources:
    """Imports the module_utils sent along (name -> source) under their own names: a
    meta path finder and its loader by protocol (find_spec; create_module and
    exec_module). Not importlib.abc's classes: on the host's Python 3.13 importing
    importlib.abc imports importlib.resources, pathlib and inspect, 25 ms of the
    host's CPU on every task."""

    def __init__(self, sources: dict[str, str]):
        self.sources = sources

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname in self.sources or fullname in STAND_INS:
            package = fullname not in self.sources
            loader: Any = self  # a loader by its exec_module (typeshed wants load_module too)
            return importlib.util.spec_from_loader(fullname, loader, is_package=package)
        return None

    def create_module(self, spec: ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        source = self.sources.get(module.__name__)
        if source is None:  # a stand-in package
            module.__path__ = []
            return
        run_source(source, module.__name__.replace(".", "/") + ".py", module)


def run_source(source: str, filename: str, module: types.ModuleType) -> None:
    """The module's code (the controller sent it with the task) run in its namespace."""
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102  # nosec B102


def expand(params: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """What AnsibleModule does to a "path" value on the host: ~ and $VARS expanded."""

    def one(value: Any) -> Any:
        return os.path.expanduser(os.path.expandvars(value)) if isinstance(value, str) else value

    for key in paths:
        value = params.get(key)
        params[key] = [one(v) for v in value] if isinstance(value, list) else one(value)
    return params


def main() -> None:
    args = json.loads(ARGS)
    AnsibleModule.params = expand(dict(args["params"]), args.get("paths") or [])
    AnsibleModule.check_mode = bool(args.get("_ansible_check_mode"))
    basic = types.ModuleType("ansible.module_utils.basic")
    basic.AnsibleModule = AnsibleModule  # type: ignore[attr-defined]
    sys.modules["ansible.module_utils.basic"] = basic
    sys.meta_path.insert(0, Sources(args["sources"]))
    module = types.ModuleType("__main__")
    module.__file__ = args["name"] + ".py"
    sys.modules["__main__"] = module
    try:
        run_source(args["module"], module.__file__, module)
    except Exception as error:  # what AnsiballZ reports when a module raises
        message = f"{type(error).__name__}: {error}"
        emit({"failed": True, "msg": message, "exception": traceback.format_exc()}, 1)
    emit({"failed": True, "msg": args["name"] + " ended without a result"}, 1)


if __name__ == "__main__":
    main()
