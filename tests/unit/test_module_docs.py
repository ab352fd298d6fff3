"""Every module's DOCUMENTATION says what its ARGUMENT_SPEC does, and main() uses that spec.

ansible-doc shows DOCUMENTATION; AnsibleModule enforces ARGUMENT_SPEC. A default, a type or
a required flag changed in one and not the other would make the documentation lie.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import app_container
import app_logs
import app_oneoff
import deploy_lock
import health_probe
import proxy_upstream
import pytest
import yaml
from module_harness import run_module

MODULES = [deploy_lock, app_container, proxy_upstream, health_probe, app_logs, app_oneoff]
# What an option's documentation and its spec must agree on, and the value when not given.
FIELDS = {"type": "str", "default": None, "required": False, "choices": None, "elements": None}


def documented(module: ModuleType) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(module.DOCUMENTATION)
    return doc


def agreed(option: dict[str, Any]) -> dict[str, Any]:
    """The fields of FIELDS an option has, with their values when not given."""
    return {field: option.get(field, absent) for field, absent in FIELDS.items()}


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__.rpartition(".")[2])
def test_documentation_options_match_the_argument_spec(module: ModuleType) -> None:
    options = documented(module)["options"]
    spec = module.ARGUMENT_SPEC
    assert list(options) == list(spec), "the same options, in the same order"
    for name in spec:
        assert agreed(options[name]) == agreed(spec[name]), name
        assert options[name]["description"], name


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__.rpartition(".")[2])
def test_documentation_examples_and_returns_are_yaml(module: ModuleType) -> None:
    doc = documented(module)
    # The file's name (under mutmut the module is imported as library.deploy_lock).
    name = module.__name__.rpartition(".")[2]
    assert doc["module"] == name
    assert doc["short_description"]
    examples = yaml.safe_load(module.EXAMPLES)
    assert all(name in task for task in examples)
    returns = yaml.safe_load(module.RETURN)
    assert all({"description", "returned", "type"} <= set(value) for value in returns.values())


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__.rpartition(".")[2])
def test_main_validates_with_the_argument_spec(module: ModuleType) -> None:
    """AnsibleModule's view of the parameters: every option of ARGUMENT_SPEC, with its
    default, and nothing else."""
    result = run_module(module.main, {"h1_unknown": 1})
    assert result["rc"] == 1
    args = dict(result["invocation"]["module_args"])
    assert args.pop("h1_unknown") == 1
    assert args == {name: option.get("default") for name, option in module.ARGUMENT_SPEC.items()}
    required = sorted(
        name for name, option in module.ARGUMENT_SPEC.items() if option.get("required")
    )
    if required:
        assert result["msg"] == f"missing required arguments: {', '.join(required)}"
    else:  # app_container: what is required depends on the state (required_if)
        assert result["msg"] == "state is started but all of the following are missing: name, image"


def test_the_returns_the_roles_read_are_documented() -> None:
    assert {"lock", "broken", "action", "files", "checksums", "image_tags", "written"} <= set(
        yaml.safe_load(deploy_lock.RETURN)
    )
    assert set(yaml.safe_load(health_probe.RETURN)) == {
        "healthy", "status", "attempts", "elapsed", "error", "phase", "state", "probes", "msg"
    }  # fmt: skip
    assert set(yaml.safe_load(app_container.RETURN)) == {"container_id", "ip", "removed_images"}
    assert set(yaml.safe_load(proxy_upstream.RETURN)) == {"reloaded", "applied_at"}
    assert set(yaml.safe_load(app_logs.RETURN)) == {"lines", "found"}
    assert {"exit_code", "stdout_lines", "stderr_lines", "timed_out"} <= set(
        yaml.safe_load(app_oneoff.RETURN)
    )
