"""testbed/ledger.py: the suites' playbook runs, added up by suite and test file;
and testbed/playbook.py's runner, which measures each run's CPU for it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed import ledger
from testbed.playbook import Command


@pytest.mark.parametrize(
    ("current", "test", "file", "suite"),
    [
        (
            "tests/faults/test_3_apps.py::test_b[x y] (call)",
            "tests/faults/test_3_apps.py::test_b[x y]",
            "tests/faults/test_3_apps.py",
            "tests/faults",
        ),
        (
            "tests/e2e/test_deploy.py::test_a (setup)",
            "tests/e2e/test_deploy.py::test_a",
            "tests/e2e/test_deploy.py",
            "tests/e2e",
        ),
        ("", "", "outside any test", "outside any test"),
    ],
)
def test_a_run_is_filed_under_its_test_file_and_suite(
    current: str, test: str, file: str, suite: str
) -> None:
    assert ledger.test_of(current) == test
    assert ledger.file_of(test) == file
    assert ledger.suite_of(test) == suite


def test_an_entry_names_the_playbook_and_rounds_the_times() -> None:
    args = [".venv/bin/ansible-playbook", "-i", "inv.json", "playbooks/deploy.yml", "-e", "sha=a"]
    assert ledger.entry(args, 12.345, 3.456, "tests/e2e/test_x.py::t (call)") == {
        "test": "tests/e2e/test_x.py::t",
        "playbook": "deploy.yml",
        "seconds": 12.35,
        "cpu": 3.46,
    }
    assert ledger.entry(["python3", "-c", "pass"], 1, 1, "")["playbook"] == ""


def test_the_report_adds_up_by_suite_then_by_file_largest_first() -> None:
    entries = [
        {"test": "tests/e2e/test_a.py::t1", "cpu": 10.0, "seconds": 20.0},
        {"test": "tests/e2e/test_a.py::t2", "cpu": 5.0, "seconds": 8.0},
        {"test": "tests/e2e/test_b.py::t", "cpu": 1.0, "seconds": 2.0},
        {"test": "tests/faults/test_c.py::t", "cpu": 30.0, "seconds": 40.0},
    ]
    assert ledger.report_lines(entries, top=2) == [
        "playbook runs: 4, 46 core-s on the controller (ansible-playbook, its workers, ssh), "
        "70 s of wall time added up",
        "   runs  core-s  wall s  suite",
        "      1      30      40  tests/faults",
        "      3      16      30  tests/e2e",
        "   runs  core-s  wall s  test file (the 2 largest)",
        "      1      30      40  tests/faults/test_c.py",
        "      2      15      28  tests/e2e/test_a.py",
    ]
    assert ledger.report_lines([]) == ["playbook runs: none recorded"]


ENTRY = st.fixed_dictionaries(
    {
        "test": st.sampled_from(
            ["", "tests/e2e/a.py::t", "tests/e2e/b.py::t", "tests/faults/c.py::t"]
        ),
        "cpu": st.floats(0, 1000, allow_nan=False),
        "seconds": st.floats(0, 1000, allow_nan=False),
    }
)


@given(st.lists(ENTRY, max_size=30))
def test_every_run_counts_once_in_the_suites_and_once_in_the_files(entries: list[dict]) -> None:
    for key in ("suite", "file"):
        rows = ledger.sums(entries, key)
        assert sum(runs for _, runs, _, _ in rows) == len(entries)
        assert sum(cpu for _, _, cpu, _ in rows) == pytest.approx(sum(e["cpu"] for e in entries))
        spent = [cpu for _, _, cpu, _ in rows]
        assert spent == sorted(spent, reverse=True)


def test_lines_that_do_not_read_are_left_out() -> None:
    good = json.dumps({"test": "", "playbook": "x.yml", "seconds": 1, "cpu": 1})
    lines = [good, '{"test": "cut sh', "[1]", '{"cpu": 1}']
    assert ledger.read_entries(lines) == [json.loads(good)]


# Burns about 0.3 s of CPU, then exits with the code given.
BUSY = (
    "import sys, time\nend = time.process_time() + 0.3\n"
    "while time.process_time() < end: pass\nsys.exit(int(sys.argv[1]))"
)


@pytest.mark.parametrize("code", [0, 3])
def test_a_playbook_run_is_recorded_with_the_cpu_it_used(
    code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.jsonl"
    monkeypatch.setenv(ledger.ENV, str(path))
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/e2e/test_x.py::t (call)")
    run = Command([sys.executable, "-c", BUSY, str(code), "playbooks/x.yml"]).run()
    assert run.rc == code
    [item] = ledger.read_entries(path.read_text().splitlines())
    assert item["test"] == "tests/e2e/test_x.py::t"
    assert item["playbook"] == "x.yml"
    assert 0.25 <= item["cpu"] <= item["seconds"] + 0.1


def test_a_command_without_a_playbook_is_not_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.jsonl"
    monkeypatch.setenv(ledger.ENV, str(path))
    ledger.record(["python3", "-c", "pass"], 1.0, 1.0)
    assert not path.exists()
    ledger.record(["ansible-playbook", "playbooks/x.yml"], 1.0, 1.0)
    assert len(path.read_text().splitlines()) == 1
