"""Copy the last run's results table (.testbed/faults/results.md) into
docs/faults.md, between its two marker lines. Run by `make faults-doc`."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".testbed" / "faults" / "results.md"
DOC = ROOT / "docs" / "faults.md"
START = "<!-- results: start (make faults-doc) -->"
END = "<!-- results: end -->"


def refreshed(doc: str, table: str) -> str:
    head, rest = doc.split(START, 1)
    _old, tail = rest.split(END, 1)
    return f"{head}{START}\n{table.strip()}\n{END}{tail}"


def main() -> int:
    if not RESULTS.exists():
        print(f"no results yet: run make faults first ({RESULTS.relative_to(ROOT)})")
        return 1
    DOC.write_text(refreshed(DOC.read_text(), RESULTS.read_text()))
    print(f"{DOC.relative_to(ROOT)}: table from {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
