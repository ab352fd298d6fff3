"""The roles' structure stays as the README's architecture section says.

Follows every import/include from the playbooks (statically, as a reader would)
and checks: a role calls another only through an entry point listed in the
callee's meta/argument_specs.yml, never imports another role's task file, the
calls between roles go one way, and a deploy reads in at most 12 YAML files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NESTED = ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers")
TASK_KEYS = ("import_tasks", "include_tasks")
ROLE_KEYS = ("import_role", "include_role")
# rollback -> app_deploy -> edge_proxy, healthcheck (README, "The rooms").
ALLOWED_CALLS = {
    ("rollback", "app_deploy"),
    ("app_deploy", "edge_proxy"),
    ("app_deploy", "healthcheck"),
}


def _key(item: dict[str, Any], short: str) -> Any:
    return item.get(short, item.get(f"ansible.builtin.{short}"))


def role_of(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    return parts[1] if parts[0] == "roles" else None


def entry_points(role: str) -> set[str]:
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return set(spec["argument_specs"])


@dataclass
class Trace:
    files: list[Path] = field(default_factory=list)
    calls: set[tuple[str, str]] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def visit(self, path: Path) -> None:
        path = path.resolve()
        if path in self.files:
            return
        assert path.exists(), f"{path.relative_to(ROOT)} is imported but missing"
        self.files.append(path)
        self.walk(yaml.safe_load(path.read_text()) or [], path)

    def walk(self, items: Any, path: Path) -> None:
        for item in items if isinstance(items, list) else [items]:
            if not isinstance(item, dict):
                continue
            for key in NESTED:
                if key in item:
                    self.walk(item[key], path)
            playbook = _key(item, "import_playbook")
            if isinstance(playbook, str):
                self.visit(path.parent / playbook)
            for key in TASK_KEYS:
                self.task_file(_key(item, key), path)
            for key in ROLE_KEYS:
                self.role_call(_key(item, key), path)

    def task_file(self, value: Any, path: Path) -> None:
        name = value if isinstance(value, str) else (value or {}).get("file")
        if not isinstance(name, str):
            return
        if "{{" in name:
            # A file chosen at run time: "install-{{ source }}.yml" may be any
            # match of install-*.yml; a whole template is a user's hook file.
            pattern = re.sub(r"{{.*?}}", "*", name)
            for match in sorted(path.parent.glob(pattern)) if pattern.strip("*") else []:
                self.visit(match)
            return
        target = (path.parent / name).resolve()
        if role_of(target) != role_of(path):
            self.problems.append(
                f"{path.relative_to(ROOT)} imports task file {name} of another role"
            )
        self.visit(target)

    def role_call(self, value: Any, path: Path) -> None:
        if not isinstance(value, dict):
            return
        callee, entry = str(value["name"]), str(value.get("tasks_from", "main"))
        caller = role_of(path)
        where = path.relative_to(ROOT)
        if caller != callee:
            if caller:
                self.calls.add((caller, callee))
            if entry.removesuffix(".yml") not in entry_points(callee):
                self.problems.append(f"{where}: {callee} tasks_from={entry} is no entry point")
        self.visit(ROOT / "roles" / callee / "tasks" / f"{entry.removesuffix('.yml')}.yml")


def trace(playbook: str) -> Trace:
    result = Trace()
    result.visit(ROOT / "playbooks" / playbook)
    return result


PLAYBOOKS = sorted(p.name for p in (ROOT / "playbooks").glob("*.yml"))


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_roles_call_each_other_only_through_entry_points(playbook: str) -> None:
    result = trace(playbook)
    assert result.problems == []
    assert result.calls <= ALLOWED_CALLS, sorted(result.calls - ALLOWED_CALLS)


def test_a_deploy_reads_in_at_most_twelve_yaml_files() -> None:
    files = trace("deploy.yml").files
    assert len(files) <= 12, [str(f.relative_to(ROOT)) for f in files]
    # The whole deploy, step by step, is app_deploy's main.yml.
    assert ROOT / "roles" / "app_deploy" / "tasks" / "main.yml" in files


def test_every_role_task_file_is_reached_from_a_playbook_or_the_molecule_scenarios() -> None:
    reached: set[Path] = set()
    for playbook in PLAYBOOKS:
        reached.update(trace(playbook).files)
    for scenario in (ROOT / "molecule").glob("*/*.yml"):
        found = Trace()
        found.visit(scenario)
        reached.update(found.files)
    # A role's main.yml is its default entry point, there for users too.
    task_files = {
        p.resolve() for p in (ROOT / "roles").glob("*/tasks/*.yml") if p.name != "main.yml"
    }
    unreached = sorted(str(p.relative_to(ROOT)) for p in task_files - reached)
    assert unreached == []


def test_no_lint_exception_for_variable_names() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("roles", "playbooks", "molecule")
        for path in (ROOT / folder).rglob("*.yml")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "noqa: var-naming" in line
    ]
    assert offenders == []


def test_no_test_imports_conftest_or_another_test_module() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in (ROOT / "tests").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s*(from|import)\s+(conftest|test_\w+|tests\.)", line)
    ]
    assert offenders == []
