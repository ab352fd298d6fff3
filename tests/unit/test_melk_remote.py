"""The project's modules run without AnsiballZ (action_plugins/melk_remote.py and
library/melk_remote_run.py): what the controller decides, and the same results as the
usual way under ansible-playbook (connection local, no engine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ModuleArgumentSpecValidator
from hypothesis import given
from hypothesis import strategies as st

from action_plugins.melk_remote import (
    analysis_entry,
    analysis_key,
    blockers,
    bundle,
    check_arguments,
    controller_spec,
    entry_sources,
    imported_utils,
    load_entry,
    module_namespace,
    path_options,
    plain,
    store_entry,
    utils_source,
)

ROOT = Path(__file__).resolve().parents[2]
UTILS = [str(ROOT / "module_utils")]
MODULES = {
    "deploy_lock": ROOT / "library/deploy_lock.py",
    "app_container": ROOT / "roles/app_deploy/library/app_container.py",
    "proxy_upstream": ROOT / "roles/edge_proxy/library/proxy_upstream.py",
    "health_probe": ROOT / "roles/healthcheck/library/health_probe.py",
}
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
# what ansible-playbook -vvv prints when a task runs through library/melk_remote_run.py
RUNNER_USED = f"Using module file {ROOT / 'library/melk_remote_run.py'}"
INTERPRETER = f"ansible_python_interpreter={sys.executable}"


def read_util(name: str) -> str:
    return utils_source(name, UTILS)


# --- what the controller decides ---------------------------------------------------------


def test_imported_utils_lists_module_utils_once_in_order() -> None:
    source = textwrap.dedent(
        """
        import json
        from ansible.module_utils.basic import AnsibleModule
        from ansible.module_utils.melk_files import read_text
        import ansible.module_utils.melk_http
        from ansible.module_utils.melk_files import write_atomic
        from .relative import thing
        """
    )
    assert imported_utils(source) == [
        "ansible.module_utils.basic",
        "ansible.module_utils.melk_files",
        "ansible.module_utils.melk_http",
    ]


def test_bundle_follows_the_module_utils_imports_of_module_utils() -> None:
    # deploy_lock imports melk_lock, which imports melk_files
    sources = bundle(MODULES["deploy_lock"].read_text(), read_util)
    assert sorted(sources) == [
        "ansible.module_utils.melk_docker",
        "ansible.module_utils.melk_files",
        "ansible.module_utils.melk_http",
        "ansible.module_utils.melk_lock",
        "ansible.module_utils.melk_module",
    ]
    assert (
        sources["ansible.module_utils.melk_files"]
        == (ROOT / "module_utils/melk_files.py").read_text()
    )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_the_four_modules_run_without_ansiballz(name: str) -> None:
    source = MODULES[name].read_text()
    assert blockers(source, bundle(source, read_util).values()) == []


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (
            "from ansible.module_utils.common.text.converters import to_text",
            "imports ansible.module_utils.common.text.converters",
        ),
        (
            "module = AnsibleModule(argument_spec={}, mutually_exclusive=[])",
            "AnsibleModule(mutually_exclusive=...)",
        ),
        ("module.get_bin_path('docker')", "module.get_bin_path"),
        ("module.sha256('/etc/hosts')", "module.sha256"),
        ("from ansible.module_utils.basic import env_fallback", "imports env_fallback from basic"),
    ],
)
def test_a_module_that_needs_more_than_the_runner_has_goes_the_usual_way(
    code: str, reason: str
) -> None:
    source = "from ansible.module_utils.basic import AnsibleModule\n" + code + "\n"
    assert blockers(source) == [reason]


def test_module_utils_that_need_more_block_too() -> None:
    util = "def run(module):\n    return module.atomic_move('a', 'b')\n"
    assert blockers("x = 1\n", [util]) == ["module.atomic_move"]


def test_path_options_are_expanded_on_the_host_not_on_the_controller() -> None:
    spec = {
        "path": {"type": "path", "required": True},
        "read": {"type": "list", "elements": "path"},
        "names": {"type": "list", "elements": "str"},
        "owner": {"type": "str"},
    }
    assert path_options(spec) == ["path", "read"]
    checked = controller_spec(spec)
    assert checked["path"] == {"type": "str", "required": True}
    assert checked["read"] == {"type": "list", "elements": "str"}
    assert checked["names"] == spec["names"]
    params, _, error = check_arguments("m", spec, [], {"path": "~/x", "read": ["$HOME/y"]})
    assert error is None
    assert params["path"] == "~/x" and params["read"] == ["$HOME/y"]


def spec_of(name: str) -> tuple[dict[str, Any], list[Any]]:
    namespace: dict[str, Any] = {}
    module = __import__(name)
    namespace.update(vars(module))
    return namespace["ARGUMENT_SPEC"], namespace.get("REQUIRED_IF", [])


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        (
            "deploy_lock",
            {"path": "/l", "owner": "o", "run_id": "r", "bogus": 1},
            "Unsupported parameters for (deploy_lock) module: bogus. Supported parameters include:",
        ),
        (
            "deploy_lock",
            {"path": "/l"},
            "state is acquire but all of the following are missing: owner, run_id",
        ),
        (
            "deploy_lock",
            {"path": "/l", "state": "steal"},
            "value of state must be one of: acquire, release, break, got: steal",
        ),
        ("health_probe", {"url": "http://x", "seconds": "soon"}, "argument 'seconds' is of type"),
        (
            "app_container",
            {"state": "started", "name": "a"},
            "state is started but all of the following are missing: image",
        ),
    ],
)
def test_bad_arguments_fail_with_the_message_ansiblemodule_gives(
    name: str, args: dict[str, Any], message: str
) -> None:
    spec, required_if = spec_of(name)
    _, _, error = check_arguments(name, spec, required_if, args)
    assert error is not None and error.startswith(message), error
    ours = ModuleArgumentSpecValidator(spec, required_if=required_if).validate(dict(args))
    assert ours.error_messages and str(ours.errors.msg) in error


def test_defaults_and_types_are_applied_and_no_log_values_kept() -> None:
    spec = {
        "secret": {"type": "str", "no_log": True},
        "count": {"type": "int", "default": 3},
        "ratio": {"type": "float"},
    }
    params, no_log, error = check_arguments("m", spec, [], {"secret": "hunter2", "ratio": "0.5"})
    assert error is None
    assert params == {"secret": "hunter2", "count": 3, "ratio": 0.5}
    assert no_log == {"hunter2"}


PLAIN = st.text(st.characters(blacklist_characters="~$", blacklist_categories=("Cs",)), max_size=12)


@given(
    state=st.sampled_from(["acquire", "release", "break"]),
    owner=st.one_of(st.none(), PLAIN),
    run_id=st.one_of(st.none(), PLAIN),
    timeout=st.one_of(st.none(), st.floats(0.1, 60), st.integers(1, 60).map(str)),
    read=st.one_of(st.none(), st.lists(PLAIN.map(lambda s: "/r/" + s), max_size=3)),
)
def test_the_controller_checks_deploy_lock_arguments_as_ansiblemodule_does(
    state: str, owner: str | None, run_id: str | None, timeout: Any, read: list[str] | None
) -> None:
    spec, required_if = spec_of("deploy_lock")
    given_args = {
        "path": "/var/lib/melk/deploy.lock",
        "state": state,
        "owner": owner,
        "run_id": run_id,
        "probe_timeout": timeout,
        "read": read,
    }
    args = {k: v for k, v in given_args.items() if v is not None}
    params, _, error = check_arguments("deploy_lock", spec, required_if, args)
    usual = ModuleArgumentSpecValidator(spec, required_if=required_if).validate(dict(args))
    assert (error is None) == (not usual.error_messages)
    if error is None:
        assert params == usual.validated_parameters


# --- under ansible-playbook: the same results as the usual way -----------------------------


def run_playbook(
    tmp: Path, tasks: list[dict[str, Any]], fast: bool, extra_env: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Run tasks on localhost (connection local): (each task's result, the -vvv output)."""
    playbook = tmp / "play.yml"
    playbook.write_text(
        yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    )
    actions = str(ROOT / "action_plugins") if fast else str(tmp / "no-actions")
    (tmp / "no-actions").mkdir(exist_ok=True)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ACTION_PLUGINS": actions,
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOCAL_TEMP": str(tmp / "local"),
        **(extra_env or {}),
    }
    command = [PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", INTERPRETER, str(playbook)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(done.stdout[-2000:] + done.stderr[-2000:]) from None
    results = [task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]]
    # the same tasks again, -vvv with the default callback: which module file ran
    verbose = subprocess.run(
        [command[0], "-vvv", *command[1:]],
        env={**env, "ANSIBLE_STDOUT_CALLBACK": "default"},
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    return results, verbose.stdout


STABLE = ("changed", "failed", "skipped", "msg", "files", "checksums", "held", "state", "warnings")


def stable(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in STABLE if k in result}


def test_deploy_lock_gives_the_same_results_both_ways(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "releases.json").write_text('{"current": null}\n')
    (state / "app.env").write_text("A=1\n")
    lock = {"path": str(state / "deploy.lock")}
    tasks = [
        {
            "deploy_lock": {
                **lock,
                "owner": "me",
                "run_id": "r1",
                "read": [str(state / "releases.json"), str(state / "missing")],
                "checksum": [str(state / "app.env")],
            }
        },
        {
            "deploy_lock": {
                **lock,
                "run_id": "r1",
                "state": "release",
                "write": {str(state / "releases.json"): '{"current": 1}\n'},
            }
        },
        {"deploy_lock": {**lock, "owner": "me", "run_id": "r2", "bogus": 1}, "ignore_errors": True},
        {"deploy_lock": {**lock}, "ignore_errors": True},
    ]
    (tmp_path / "fast").mkdir()
    (tmp_path / "usual").mkdir()
    fast, fast_log = run_playbook(tmp_path / "fast", tasks, fast=True)
    (state / "releases.json").write_text('{"current": null}\n')
    usual, usual_log = run_playbook(tmp_path / "usual", tasks, fast=False)
    assert [stable(r) for r in fast] == [stable(r) for r in usual]
    assert fast[0]["files"][str(state / "releases.json")] == '{"current": null}\n'
    assert (state / "releases.json").read_text() == '{"current": 1}\n'
    assert (
        fast[2]["failed"]
        and "Unsupported parameters for (deploy_lock) module: bogus" in fast[2]["msg"]
    )
    assert fast[3]["failed"] and "missing: owner, run_id" in fast[3]["msg"]
    # the fast path ran, and only there
    assert RUNNER_USED in fast_log
    assert RUNNER_USED not in usual_log


def fixture_module(tmp: Path, name: str, source: str, fast: bool) -> dict[str, str]:
    """A module NAME in tmp/library with an action plugin that is melk_remote (fast), or
    no action plugin at all: the Ansible settings that find them."""
    library, actions, empty = tmp / "library", tmp / "actions", tmp / "empty"
    for directory in (library, actions, empty):
        directory.mkdir()
    (library / f"{name}.py").write_text(source)
    (actions / f"{name}.py").write_text(
        "from ansible.plugins.loader import action_loader\n"
        'ActionModule = action_loader.get("melk_remote", class_only=True)\n'
    )
    return {
        "ANSIBLE_LIBRARY": f"{library}:{ROOT / 'library'}",
        "ANSIBLE_ACTION_PLUGINS": f"{actions}:{ROOT / 'action_plugins'}" if fast else str(empty),
    }


FIXTURE = """
from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC = {
    "secret": {"type": "str", "no_log": True},
    "where": {"type": "path"},
    "count": {"type": "int", "default": 3},
    "boom": {"type": "bool", "default": False},
    "command": {"type": "list", "elements": "str", "default": []},
}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=False)
    if module.params["boom"]:
        raise ValueError("boom")
    module.warn("careful")
    command = module.params["command"]
    rc, out, _err = module.run_command(command) if command else (0, "", "")
    echo = "the secret is " + str(module.params["secret"])
    where, count = module.params["where"], module.params["count"]
    module.exit_json(changed=True, echo=echo, where=where, count=count, rc=rc, out=out)


if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "usual"])
def test_secrets_paths_warnings_check_mode_and_errors_as_ansiblemodule(
    tmp_path: Path, fast: bool
) -> None:
    env = fixture_module(tmp_path, "melk_fixture", FIXTURE, fast)
    tasks = [
        {
            "melk_fixture": {
                "secret": "hunter2",
                "where": "~/data",
                "count": "5",
                "command": ["echo", "out"],
            }
        },
        {"melk_fixture": {"secret": "hunter2"}, "check_mode": True},
        {"melk_fixture": {"boom": True}, "ignore_errors": True},
        {"melk_fixture": {"command": ["/nonexistent/tool"]}, "ignore_errors": True},
    ]
    results, log = run_playbook(tmp_path, tasks, fast=fast, extra_env=env)
    echoed, checked, raised, missing = results
    assert echoed["changed"] is True
    assert "hunter2" not in json.dumps(echoed)
    assert echoed["echo"] == "the secret is ********"
    assert echoed["where"] == os.path.expanduser("~/data")
    assert echoed["count"] == 5
    assert (echoed["rc"], echoed["out"]) == (0, "out\n")
    assert "careful" in json.dumps(echoed.get("warnings"))
    assert checked.get("skipped") is True
    assert raised["failed"] and "boom" in json.dumps(raised)
    assert missing["failed"] and "nonexistent" in json.dumps(missing)
    assert (RUNNER_USED in log) is fast


PLAIN_MODULE = """
from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={"word": {"type": "str", "default": "hi"}})
    module.exit_json(said=module.params["word"])


if __name__ == "__main__":
    main()
"""


def test_a_module_without_argument_spec_at_module_level_runs_the_usual_way(
    tmp_path: Path,
) -> None:
    env = fixture_module(tmp_path, "melk_plain", PLAIN_MODULE, fast=True)
    library = tmp_path / "library"
    (said,), log = run_playbook(
        tmp_path, [{"melk_plain": {"word": "yo"}}], fast=True, extra_env=env
    )
    assert said["said"] == "yo"
    assert RUNNER_USED not in log
    assert f"Using module file {library / 'melk_plain.py'}" in log


# --- the analysis kept on disk (analysis_cache) -------------------------------------------


@given(st.text(), st.text(), st.binary(), st.binary())
def test_the_key_follows_the_module_source_and_the_analyser(
    source: str, other: str, analyser: bytes, other_analyser: bytes
) -> None:
    key = analysis_key(source, analyser)
    assert key == analysis_key(source, analyser)
    assert (key == analysis_key(other, analyser)) == (source == other)
    assert (key == analysis_key(source, other_analyser)) == (analyser == other_analyser)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_analysis_is_json_data_and_checks_the_same(name: str) -> None:
    """What is kept is what a run uses: each module's spec and REQUIRED_IF survive JSON
    (tuples as lists) and refuse and accept the same arguments."""
    namespace = module_namespace(str(MODULES[name]), UTILS)
    spec, required_if = namespace["ARGUMENT_SPEC"], namespace.get("REQUIRED_IF", [])
    kept = json.loads(json.dumps(analysis_entry({}, plain(spec), plain(required_if))))
    assert kept["spec"] == plain(spec)
    for args in ({}, {"name": "x", "path": "/p", "url": "http://h/", "state": "bogus"}):
        assert (
            check_arguments(name, kept["spec"], kept["required_if"], args)[2]
            == (check_arguments(name, spec, required_if, args)[2])
        )


def test_plain_refuses_what_json_cannot_hold() -> None:
    assert plain({"choices": ("a", "b"), "n": 1}) == {"choices": ["a", "b"], "n": 1}
    with pytest.raises(TypeError):
        plain({"choices": {"a"}})


def test_a_kept_entry_is_used_only_while_its_module_utils_are_unchanged(tmp_path: Path) -> None:
    sources = {"ansible.module_utils.melk_a": "A = 1\n", "ansible.module_utils.melk_b": "B = 2\n"}
    spec = {"path": {"type": "str", "required": True}}
    store_entry(tmp_path, "k", analysis_entry(sources, spec, [["path", "x", ["y"]]]))
    entry = load_entry(tmp_path, "k")
    on_disk = dict(sources)
    assert entry_sources(entry, on_disk.__getitem__) == (sources, spec, [["path", "x", ["y"]]])
    on_disk["ansible.module_utils.melk_b"] = "B = 3\n"
    assert entry_sources(entry, on_disk.__getitem__) is None
    del on_disk["ansible.module_utils.melk_b"]

    def gone(name: str) -> str:
        raise FileNotFoundError(name)

    assert entry_sources(entry, gone) is None
    for broken in (None, [], {"utils": {}}, {"utils": [], "spec": {}, "required_if": []}):
        assert entry_sources(broken, on_disk.__getitem__) is None
    assert load_entry(tmp_path, "missing") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert load_entry(tmp_path, "bad") is None


def test_a_cache_that_cannot_be_written_fails_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    store_entry(tmp_path / "file" / "cache", "k", {"utils": {}, "spec": {}, "required_if": []})
    assert load_entry(tmp_path / "file" / "cache", "k") is None


def test_runs_keep_the_analysis_and_find_it_again_when_a_module_util_changes(
    tmp_path: Path,
) -> None:
    """The first run writes deploy_lock's entry; a run reads it (a planted spec that
    refuses the task shows it is used); an entry whose module_utils hash no longer
    matches is found again and rewritten."""
    home = tmp_path / "home"
    env = {"ANSIBLE_HOME": str(home)}
    lock = {"path": str(tmp_path / "deploy.lock"), "run_id": "r1", "state": "release"}
    (done,), _log = run_playbook(tmp_path, [{"deploy_lock": lock}], fast=True, extra_env=env)
    assert not done.get("failed"), done
    (kept,) = (home / "melk" / "remote-analysis").glob("*.json")
    entry = json.loads(kept.read_text())
    assert "ansible.module_utils.melk_lock" in entry["utils"]
    assert entry["spec"]["path"]["type"] == "path"

    planted = {**entry, "spec": {**entry["spec"], "state": {"type": "str", "choices": ["planted"]}}}
    kept.write_text(json.dumps(planted))
    (refused,), _log = run_playbook(
        tmp_path, [{"deploy_lock": lock, "ignore_errors": True}], fast=True, extra_env=env
    )
    assert refused["failed"] and "planted" in refused["msg"], refused

    stale = {**planted, "utils": {**planted["utils"], "ansible.module_utils.melk_lock": "0" * 64}}
    kept.write_text(json.dumps(stale))
    (again,), _log = run_playbook(tmp_path, [{"deploy_lock": lock}], fast=True, extra_env=env)
    assert not again.get("failed"), again
    assert json.loads(kept.read_text()) == entry


def test_a_lock_release_on_the_host_imports_neither_urllib_nor_importlib_abc(
    tmp_path: Path,
) -> None:
    """The host's side of a task that sends no probe: library/melk_remote_run.py with
    deploy_lock's release, as Ansible pipes it (the arguments in place of its marker).
    urllib (ssl, http.client, email) and importlib.abc (importlib.resources, pathlib,
    inspect) cost the host 25-30 ms each per task; a probe still imports urllib."""
    runner = (ROOT / "library/melk_remote_run.py").read_text()
    source = MODULES["deploy_lock"].read_text()
    arguments = {
        "name": "deploy_lock",
        "module": source,
        "sources": bundle(source, read_util),
        "params": {"path": str(tmp_path / "deploy.lock"), "run_id": "r1", "state": "release"},
        "paths": ["path"],
    }
    marker = "<<INCLUDE_ANSIBLE_MODULE_JSON_ARGS>>"
    assert marker in runner
    script = tmp_path / "runner.py"
    script.write_text(runner.replace(marker, json.dumps(arguments)))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(script)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ["PATH"]},
    )
    assert json.loads(done.stdout)["msg"].endswith("is not held"), done.stdout + done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "json" in imported  # the report is read
    assert not {"urllib.request", "importlib.abc", "ssl"} & imported
