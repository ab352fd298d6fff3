"""The README's variables table cannot drift from the argument specs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def table_rows(markdown: str, heading: str) -> dict[str, list[str]]:
    """The first table under `heading`: first column (backticks stripped) -> cells."""
    section = markdown.split(heading, 1)[1]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in {"name", "variable"} or set(cells[0]) <= {"-"}:
            continue
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def spec(role: str, entry: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return dict(data["argument_specs"][entry]["options"])


def test_readme_variables_match_the_interface_spec() -> None:
    rows = table_rows((ROOT / "README.md").read_text(), "### Variables")
    options = spec("app_deploy", "validate")
    assert set(rows) == set(options)
    for name, option in options.items():
        default = rows[name][1]
        if "default" in option and option["default"] not in ("", None):
            shown = default.strip("`")
            expected = option["default"]
            if isinstance(expected, bool):
                expected = str(expected).lower()
            assert shown == str(expected) or (expected == {} and shown == "{}"), name


@pytest.mark.parametrize(
    "role", sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta").is_dir())
)
def test_role_readme_lists_every_variable_of_its_defaults(role: str) -> None:
    readme = ROOT / "roles" / role / "README.md"
    assert readme.exists(), f"roles/{role}/README.md is missing"
    rows = table_rows(readme.read_text(), "## Variables")
    defaults_file = ROOT / "roles" / role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) or {}
    assert set(defaults) <= set(rows), sorted(set(defaults) - set(rows))
    entries = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    specced = {
        name
        for entry in entries["argument_specs"].values()
        for name in (entry.get("options") or {})
        if re.match(rf"{role}_", name)
    }
    assert set(defaults) <= specced, sorted(set(defaults) - specced)
