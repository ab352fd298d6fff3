"""The report of make mutation, from ``mutmut results --all true`` on stdin.

One line per folder (mutants checked, killed, survived, no test reached it, timed out),
the score (killed, timeouts included, / checked, %) and the surviving mutants' names.
Mutants mutmut did not check (outside MUTATE) are left out. Usage::

    mutmut results --all true | python tools/mutation_report.py --seconds 600 FOLDER...
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

KILLED = frozenset({"killed", "timeout", "caught by type check", "segfault"})
SURVIVED = frozenset({"survived", "no tests", "suspicious"})
NOT_RUN = frozenset({"not checked", "skipped"})


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    survivors: list[str] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return sum(n for status, n in self.statuses.items() if status not in NOT_RUN)

    @property
    def killed(self) -> int:
        return sum(self.statuses[status] for status in KILLED)

    def line(self, name: str) -> str:
        score = 100.0 * self.killed / self.checked if self.checked else 0.0
        return (
            f"{name:<32} {self.checked:>6} {self.killed:>6} {self.statuses['survived']:>8} "
            f"{self.statuses['no tests']:>8} {self.statuses['timeout']:>7}   {score:5.1f} %"
        )


def parse(lines: Iterable[str]) -> list[tuple[str, str]]:
    """``    name: status`` lines -> (name, status)."""
    results = []
    for line in lines:
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            results.append((name, status))
    return results


def folder_of(mutant: str, folders: Sequence[str]) -> str:
    """The longest folder (as a dotted module prefix) that holds the mutant."""
    best = ""
    for folder in folders:
        prefix = folder.strip("/").replace("/", ".") + "."
        if mutant.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return best.rstrip(".").replace(".", "/") + "/" if best else "(other)"


def tally(results: Iterable[tuple[str, str]], folders: Sequence[str]) -> dict[str, Tally]:
    tallies: dict[str, Tally] = {}
    for name, status in results:
        if status in NOT_RUN:
            continue
        entry = tallies.setdefault(folder_of(name, folders), Tally())
        entry.statuses[status] += 1
        if status in SURVIVED:
            entry.survivors.append(f"{name}: {status}")
    return tallies


def report(tallies: dict[str, Tally], seconds: int | None) -> str:
    total = Tally()
    for entry in tallies.values():
        total.statuses.update(entry.statuses)
        total.survivors.extend(entry.survivors)
    header = (
        f"{'folder':<32} {'mutants':>6} {'killed':>6} {'survived':>8} {'no tests':>8} "
        f"{'timeout':>7}   score"
    )
    lines = [header, *(tallies[name].line(name) for name in sorted(tallies))]
    lines.append(total.line("total"))
    if seconds is not None:
        lines.append(f"run time: {seconds // 60} min {seconds % 60} s")
    lines.append("")
    lines.append(f"survivors ({len(total.survivors)}); see one with: mutmut show NAME")
    lines.extend(f"  {name}" for name in sorted(total.survivors))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("folders", nargs="*", help="the folders mutated, one line each")
    parser.add_argument("--seconds", type=int, help="how long the run took")
    options = parser.parse_args(argv)
    tallies = tally(parse(sys.stdin), options.folders)
    if not tallies:
        print("no mutant was checked", file=sys.stderr)
        return 1
    sys.stdout.write(report(tallies, options.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
