"""tools/mutation_report.py: the per-folder tally and score of make mutation."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "mutation_report", ROOT / "tools" / "mutation_report.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


RESULTS = """\
    filter_plugins.input_checks.x_sha_error__mutmut_1: killed
    filter_plugins.input_checks.x_sha_error__mutmut_2: survived
    filter_plugins.input_checks.x_sha_error__mutmut_3: timeout
    roles.edge_proxy.library.proxy_upstream.x_main__mutmut_1: no tests
    roles.edge_proxy.library.proxy_upstream.x_switch__mutmut_1: killed
    library.deploy_lock.x_acquire__mutmut_1: not checked
"""


def test_report_tallies_each_folder_and_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    report = load()
    monkeypatch.setattr(sys, "stdin", io.StringIO(RESULTS))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    folders = ["filter_plugins", "library", "roles/edge_proxy/library"]
    assert report.main(["--seconds", "125", *folders]) == 0
    lines = out.getvalue().splitlines()
    assert lines[1].split() == ["filter_plugins/", "3", "2", "1", "0", "1", "66.7", "%"]
    assert lines[2].split() == ["roles/edge_proxy/library/", "2", "1", "0", "1", "0", "50.0", "%"]
    assert lines[3].split() == ["total", "5", "3", "1", "1", "1", "60.0", "%"]
    assert lines[4] == "run time: 2 min 5 s"
    assert not any(line.startswith("library/") for line in lines)  # nothing of it checked
    assert lines[-2:] == [
        "  filter_plugins.input_checks.x_sha_error__mutmut_2: survived",
        "  roles.edge_proxy.library.proxy_upstream.x_main__mutmut_1: no tests",
    ]


def test_a_run_that_checked_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    report = load()
    monkeypatch.setattr(sys, "stdin", io.StringIO("    a.b.x_f__mutmut_1: not checked\n"))
    assert report.main(["a"]) == 1
