"""The playbook runs of the end-to-end and fault suites: how many, and the CPU each took.

    python -m testbed.ledger report FILE   print the sums by suite and by test file

`make test` names a file in MELK_PLAYBOOK_LEDGER; every playbook run through
`Command.run` (testbed/playbook.py) then appends one line: the test that ran it
(pytest's PYTEST_CURRENT_TEST), the playbook, its wall time and the CPU time of
ansible-playbook with everything it forked and waited for (its workers, ssh).
The test servers' own CPU is not in it (testbed/cpu.py counts that), nor are
Molecule's runs, the CD job's (ansible-runner) or the runs a test spawns without
waiting for them (a killed run).
The report says where the controller's share of `make test` goes, by test file,
so the suites' most expensive playbook runs can be found.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ENV = "MELK_PLAYBOOK_LEDGER"
TOP = 12


def test_of(current: str) -> str:
    """The test's node id from PYTEST_CURRENT_TEST ('tests/x.py::t (call)');
    '' outside a test."""
    return current.rsplit(" (", 1)[0] if current else ""


def file_of(test: str) -> str:
    """The test file of a node id ('tests/e2e/test_deploy.py::t[a]' ->
    'tests/e2e/test_deploy.py'); 'outside any test' when there is none."""
    return test.split("::", 1)[0] if test else "outside any test"


def suite_of(test: str) -> str:
    """The suite's directory ('tests/faults'), or 'outside any test'."""
    path = file_of(test)
    return path.rsplit("/", 1)[0] if "/" in path else path


def entry(args: Sequence[str], seconds: float, cpu: float, current: str) -> dict[str, Any]:
    """One run's line: the playbook is the first argument ending in .yml."""
    playbook = next((a.rsplit("/", 1)[-1] for a in args if a.endswith(".yml")), "")
    return {
        "test": test_of(current),
        "playbook": playbook,
        "seconds": round(seconds, 2),
        "cpu": round(cpu, 2),
    }


def record(args: Sequence[str], seconds: float, cpu: float) -> None:
    """Append a playbook's run to the ledger named in MELK_PLAYBOOK_LEDGER (nothing
    when it is unset, or for a command that names no playbook). One write of one
    short line in append mode: the lanes of `make test` write to the same file at
    once."""
    path = os.environ.get(ENV)
    item = entry(args, seconds, cpu, os.environ.get("PYTEST_CURRENT_TEST", ""))
    if not path or not item["playbook"]:
        return
    line = json.dumps(item)
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
    except OSError:
        pass  # the ledger is a report; a run never fails for it


def read_entries(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The ledger's lines; one that does not read (cut short) is left out."""
    found = []
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and {"cpu", "seconds"} <= item.keys():
            found.append(item)
    return found


def sums(entries: Iterable[Mapping[str, Any]], key: str) -> list[tuple[str, int, float, float]]:
    """(name, runs, core-s, wall s) per suite or per test file, by core-s, largest first."""
    group = suite_of if key == "suite" else file_of
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for item in entries:
        row = totals[group(str(item.get("test", "")))]
        row[0] += 1
        row[1] += float(item["cpu"])
        row[2] += float(item["seconds"])
    rows = [(name, int(r[0]), r[1], r[2]) for name, r in totals.items()]
    return sorted(rows, key=lambda row: (-row[2], row[0]))


def report_lines(entries: Sequence[Mapping[str, Any]], top: int = TOP) -> list[str]:
    """The suites, then the `top` test files, by the CPU their playbook runs took."""
    if not entries:
        return ["playbook runs: none recorded"]
    cpu = sum(float(e["cpu"]) for e in entries)
    wall = sum(float(e["seconds"]) for e in entries)
    lines = [
        f"playbook runs: {len(entries)}, {cpu:.0f} core-s on the controller "
        f"(ansible-playbook, its workers, ssh), {wall:.0f} s of wall time added up",
        "   runs  core-s  wall s  suite",
    ]
    lines += [f"  {n:5d}  {c:6.0f}  {w:6.0f}  {name}" for name, n, c, w in sums(entries, "suite")]
    files = sums(entries, "file")
    lines.append(f"   runs  core-s  wall s  test file (the {min(top, len(files))} largest)")
    lines += [f"  {n:5d}  {c:6.0f}  {w:6.0f}  {name}" for name, n, c, w in files[:top]]
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "report":
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[1])
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    print("\n".join(report_lines(read_entries(lines))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
