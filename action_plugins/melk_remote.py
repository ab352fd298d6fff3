"""Run the project's modules on the host without AnsiballZ: the controller checks the
arguments, the host runs only the module and the module_utils it imports.

An AnsiballZ payload carries ansible.module_utils.basic and some 50 files it imports, which
the host's Python compiles from source on every task: about 150 ms of the host's CPU and
0.1 s of wall time per task, on each host (make bench's fleet rows pay it five times at
once, on the same two cores). Every module of the project has one shape
(module_utils/melk_module.py): ARGUMENT_SPEC and REQUIRED_IF at module level, and main()
builds an AnsibleModule and uses only its params, check_mode, run_command, warn and
exit_json/fail_json. For such a module this action

1. checks the task's arguments against ARGUMENT_SPEC and REQUIRED_IF with Ansible's own
   ArgumentSpecValidator, on the controller: the same defaults, types and messages as
   AnsibleModule (a "path" is expanded on the host, as AnsibleModule does);
2. sends the module's source, the project's module_utils it imports and the checked
   parameters to library/melk_remote_run.py, a JSONARGS module that Ansible pipes to
   the host's Python over the task's connection (become, environment and check mode
   as for any module);
3. masks the values of no_log options in the result, as AnsibleModule does.

What step 1 needs from a module (the module_utils it ships with, that nothing keeps it
from running there, its ARGUMENT_SPEC and REQUIRED_IF) depends on the sources only, and
Ansible forks a fresh worker for each task and host: finding it again each time took
20-60 ms of the controller's CPU per remote task (deploy_lock's the most: three parses
of its source and its module_utils, and running its top level, which imports urllib).
It is kept on disk (`analysis_cache`), under the SHA-256 of the module's source and of
this file, with the SHA-256 of each module_utils file it ships: an entry whose
module_utils changed since is found again, and rewritten.

A module this cannot run as it is (other AnsibleModule options, other module_utils,
async) goes the usual way. The decisions are the pure functions below; ActionModule acts.
Each module's action plugin (action_plugins/<module>.py) is this class.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

RUNNER = "ansible.legacy.melk_remote_run"
UTILS_PREFIX = "ansible.module_utils."
SHIPPED_PREFIX = UTILS_PREFIX + "melk_"  # the project's own module_utils
BASIC = UTILS_PREFIX + "basic"
# Bumped when what an analysis entry holds changes (this file's own hash is in the key too).
ANALYSIS_VERSION = 1
# What library/melk_remote_run.py's AnsibleModule has.
MODULE_KEYWORDS = frozenset({"argument_spec", "required_if", "supports_check_mode"})
MODULE_ATTRIBUTES = frozenset(
    {"params", "check_mode", "run_command", "warn", "exit_json", "fail_json"}
)


def imported_utils(source: str) -> list[str]:
    """The ansible.module_utils modules a source imports, in order, each once."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found = [node.module]
        elif isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        else:
            continue
        names += [n for n in found if n.startswith(UTILS_PREFIX) and n not in names]
    return names


def blockers(source: str, utils: Iterable[str] = ()) -> list[str]:
    """Why a module's source cannot run on library/melk_remote_run.py ([] when it can):
    module_utils other than basic and the project's own, anything but AnsibleModule from
    basic, AnsibleModule options or attributes that the runner's AnsibleModule does not
    have (in the module or in the module_utils sources it ships with)."""
    found = [
        f"imports {name}"
        for text in (source, *utils)
        for name in imported_utils(text)
        if name != BASIC and not name.startswith(SHIPPED_PREFIX)
    ]
    for node in (n for text in (source, *utils) for n in ast.walk(ast.parse(text))):
        if isinstance(node, ast.ImportFrom) and node.module == BASIC:
            found += [
                f"imports {alias.name} from basic"
                for alias in node.names
                if alias.name != "AnsibleModule"
            ]
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "AnsibleModule":
            found += [
                f"AnsibleModule({kw.arg}=...)"
                for kw in node.keywords
                if kw.arg not in MODULE_KEYWORDS
            ]
        if (
            isinstance(node, ast.Attribute)
            and getattr(node.value, "id", None) == "module"
            and node.attr not in MODULE_ATTRIBUTES
        ):
            found.append(f"module.{node.attr}")
    return sorted(set(found))


def bundle(source: str, read: Callable[[str], str]) -> dict[str, str]:
    """The project's module_utils a source needs (name -> source), those they import
    included; read(name) gives one's source."""
    sources: dict[str, str] = {}
    pending = [n for n in imported_utils(source) if n.startswith(SHIPPED_PREFIX)]
    while pending:
        name = pending.pop(0)
        if name in sources:
            continue
        sources[name] = read(name)
        pending += [n for n in imported_utils(sources[name]) if n.startswith(SHIPPED_PREFIX)]
    return sources


def path_options(spec: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The options whose values are paths (type path, or a list of them)."""
    return [
        name
        for name, option in spec.items()
        if option.get("type") == "path"
        or (option.get("type") == "list" and option.get("elements") == "path")
    ]


def controller_spec(spec: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The spec the controller checks with: a path stays a string here (~ and $VARS are
    the host's, expanded there: path_options)."""
    checked: dict[str, dict[str, Any]] = {}
    for name, option in spec.items():
        option = dict(option)
        if option.get("type") == "path":
            option["type"] = "str"
        if option.get("elements") == "path":
            option["elements"] = "str"
        checked[name] = option
    return checked


def check_arguments(
    name: str,
    spec: Mapping[str, Mapping[str, Any]],
    required_if: Iterable[Any],
    args: Mapping[str, Any],
) -> tuple[dict[str, Any], set[str], str | None]:
    """(the parameters with defaults and types applied, the no_log values, the error
    AnsibleModule would fail with or None)."""
    result = ArgumentSpecValidator(controller_spec(spec), required_if=list(required_if)).validate(
        dict(args)
    )
    params: dict[str, Any] = dict(result.validated_parameters)
    if not result.error_messages:
        return params, set(result._no_log_values), None
    message = str(result.errors.msg)
    if isinstance(result.errors.errors[0], UnsupportedError):
        message = f"Unsupported parameters for ({name}) module: {message}"
    return params, set(result._no_log_values), message


def utils_source(name: str, directories: Iterable[str]) -> str:
    """The source of ansible.module_utils.NAME from the first directory that has it."""
    relative = Path(*name[len(UTILS_PREFIX) :].split(".")).with_suffix(".py")
    for directory in directories:
        candidate = Path(directory) / relative
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError(f"{name} is in none of {list(directories)}")


def module_namespace(path: str, utils_directories: Iterable[str]) -> dict[str, Any]:
    """The module's top level, run on the controller (main() is not called): its
    ARGUMENT_SPEC and REQUIRED_IF as AnsibleModule gets them."""
    import ansible.module_utils

    for directory in utils_directories:
        if directory not in ansible.module_utils.__path__:
            ansible.module_utils.__path__.append(directory)
    spec = importlib.util.spec_from_file_location(f"melk_remote_spec_{Path(path).stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return vars(module)


def plain(value: Any) -> Any:
    """value as JSON gives it back (tuples become lists): a spec is used in this form
    whether it was just found or read from the cache, so both behave the same.
    TypeError or ValueError when it is not JSON data."""
    return json.loads(json.dumps(value))


def digest(text: str | bytes) -> str:
    """SHA-256 of a source, hex."""
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


def analysis_key(source: str, analyser: bytes) -> str:
    """Where a module's analysis is kept: its source, this file's and ANALYSIS_VERSION."""
    return digest(f"{ANALYSIS_VERSION}\0{digest(analyser)}\0{digest(source)}")


def analysis_entry(
    sources: Mapping[str, str], spec: Mapping[str, Any], required_if: Iterable[Any]
) -> dict[str, Any]:
    """What is kept of a runnable module: its module_utils with their SHA-256, its
    spec and REQUIRED_IF (as plain() gives them)."""
    return {
        "utils": {name: digest(text) for name, text in sources.items()},
        "spec": dict(spec),
        "required_if": list(required_if),
    }


def entry_sources(
    entry: Any, read: Callable[[str], str]
) -> tuple[dict[str, str], dict[str, Any], list[Any]] | None:
    """A kept entry's (module_utils sources, spec, REQUIRED_IF), each source read again
    with read(name); None when the entry is not one analysis_entry wrote or a
    module_utils file is gone or changed since."""
    if not isinstance(entry, dict) or set(entry) != {"utils", "spec", "required_if"}:
        return None
    utils, spec, required_if = entry["utils"], entry["spec"], entry["required_if"]
    if not (isinstance(utils, dict) and isinstance(spec, dict) and isinstance(required_if, list)):
        return None
    sources: dict[str, str] = {}
    for name, expected in utils.items():
        try:
            sources[name] = read(name)
        except OSError:  # FileNotFoundError among them
            return None
        if digest(sources[name]) != expected:
            return None
    return sources, spec, required_if


def load_entry(directory: Path, key: str) -> Any:
    """The entry kept under key, None when there is none or it cannot be read."""
    try:
        return json.loads((directory / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def store_entry(directory: Path, key: str, entry: Mapping[str, Any]) -> None:
    """Keep entry under key (written whole, then renamed); a cache that cannot be
    written is only a cache: nothing fails."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(entry, out, sort_keys=True)
        os.replace(temporary, directory / f"{key}.json")
    except OSError:
        return


def analysis_cache() -> Path:
    """Where analyses are kept: under Ansible's home (ANSIBLE_HOME, ~/.ansible)."""
    from ansible import constants

    home = constants.config.get_config_value("ANSIBLE_HOME")
    return Path(os.path.expanduser(str(home))) / "melk" / "remote-analysis"


class ActionModule(ActionBase):  # type: ignore[misc]  # untyped base
    """The module of the task's name, run by library/melk_remote_run.py."""

    TRANSFERS_FILES = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        name = self._task.action.rpartition(".")[2]
        found = self._shared_loader_obj.module_loader.find_plugin_with_context(
            self._task.action, collection_list=self._task.collections
        )
        path = found.plugin_resolved_path if found.resolved else None
        source = Path(path).read_text(encoding="utf-8") if path else ""
        analysis = self._analysis(str(path), source) if source else None
        if analysis is None or self._task.async_val:
            return self._usual(result, task_vars)
        sources, spec, required_if = analysis
        params, no_log, error = check_arguments(name, spec, required_if, self._task.args)
        if error is not None:
            refused: dict[str, Any] = merge_hash(result, {"failed": True, "msg": error})
            return refused
        arguments = {
            "name": name,
            "module": source,
            "sources": sources,
            "params": params,
            "paths": path_options(spec),
        }
        done = self._execute_module(module_name=RUNNER, module_args=arguments, task_vars=task_vars)
        self._remove_tmp_path(self._connection._shell.tmpdir)
        finished: dict[str, Any] = merge_hash(
            result, remove_values(done, no_log) if no_log else done
        )
        return finished

    def _analysis(
        self, path: str, source: str
    ) -> tuple[dict[str, str], dict[str, Any], list[Any]] | None:
        """(the module_utils sources it ships with, its spec, its REQUIRED_IF), kept or
        found now; None when it goes the usual way."""
        directories = self._utils_directories()

        def read(util: str) -> str:
            return utils_source(util, directories)

        cache, key = analysis_cache(), analysis_key(source, Path(__file__).read_bytes())
        kept = entry_sources(load_entry(cache, key), read)
        if kept is not None:
            return kept
        try:
            sources = bundle(source, read)
        except (FileNotFoundError, SyntaxError):
            return None  # the usual way says what is missing or wrong
        if blockers(source, sources.values()):
            return None
        namespace = module_namespace(path, directories)
        if "ARGUMENT_SPEC" not in namespace:
            return None
        spec, required_if = namespace["ARGUMENT_SPEC"], namespace.get("REQUIRED_IF", [])
        try:
            spec, required_if = plain(spec), plain(required_if)
        except (TypeError, ValueError):
            return sources, spec, list(required_if)  # not JSON data: used as it is, not kept
        store_entry(cache, key, analysis_entry(sources, spec, required_if))
        return sources, spec, required_if

    def _usual(self, result: dict[str, Any], task_vars: dict[str, Any] | None) -> dict[str, Any]:
        """The module run the usual way: AnsiballZ."""
        usual: dict[str, Any] = merge_hash(result, self._execute_module(task_vars=task_vars))
        return usual

    @staticmethod
    def _utils_directories() -> list[str]:
        """Where the project's module_utils are (ansible.cfg's module_utils setting)."""
        from ansible.plugins.loader import module_utils_loader

        return [str(p) for p in module_utils_loader._get_paths(subdirs=False)]
