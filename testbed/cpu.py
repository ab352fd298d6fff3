"""Where the CPU of a test run goes: `make test` samples it every few seconds and prints
the CPU time by what used it at the end (issue 17 and CI's time budget: on two cores the
lanes keep both busy, so the run takes as long as its CPU time over two).

python -m testbed.cpu sample FILE [SECONDS]
                                    write one JSON line per SECONDS (5) to FILE until stopped
python -m testbed.cpu report FILE   print the sums by what used the CPU

What used it:
- each Docker container of this machine's engine, by name with its number left out
  (melk-fault-1 -> melk-fault-N: a test server, with its sshd, Docker engine, nginx and
  the Ansible modules it runs), from the container's cgroup;
- the cgroups of containers this engine does not know: the apps' containers, which the
  test servers' own engines start (with a cgroup v1 hierarchy shared with the machine);
- this machine's processes outside containers, by command (ansible-playbook counts the
  workers it forks and its ssh once they end, as they are its children);
- the rest of the machine's CPU time (from /proc/stat) as "other on this machine":
  processes that started and ended between two samples under a parent not counted here.
Kernel time spent for a container counts as the machine's. Only Linux; without a cgroup
v1 cpuacct hierarchy the containers are found under cgroup v2's system.slice.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess  # nosec B404: docker ps, a fixed command line
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

INTERVAL = 5.0
CGROUP_V1 = Path("/sys/fs/cgroup/cpuacct/docker")
CGROUP_V2 = Path("/sys/fs/cgroup/system.slice")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
OTHER = "other on this machine"
NESTED = "app containers inside the test servers"
SSH = "ssh (Ansible's connections to the test servers)"
# (what the command line contains, or the command's name) -> what used the CPU
COMMANDS: tuple[tuple[str, str], ...] = (
    ("ansible-playbook", "Ansible on this machine (ansible-playbook, its workers, ssh)"),
    ("ansible-lint", "lint and security checks"),
    ("yamllint", "lint and security checks"),
    ("mypy", "lint and security checks"),
    ("ruff", "lint and security checks"),
    ("bandit", "lint and security checks"),
    ("actionlint", "lint and security checks"),
    ("zizmor", "lint and security checks"),
    ("molecule", "Molecule"),
    ("pytest", "pytest"),
    ("docker-registry", "the local registries"),
)
NAMES: Mapping[str, str] = {
    "wrk": "wrk",
    "dockerd": "this machine's Docker engine",
    "containerd": "this machine's Docker engine",
    "containerd-shim": "this machine's Docker engine",
    "containerd-shim-runc-v2": "this machine's Docker engine",
    "docker-proxy": "this machine's Docker engine",
    "runc": "this machine's Docker engine",
    "docker": "docker commands",
    # an SSH master connection (ControlPersist) outlives the playbook that opened it
    "ssh": SSH,
}
WITH_CHILDREN = "ansible-playbook"


def what_process(cmdline: str, name: str) -> str:
    """What a process of this machine counts as, from its command line and name."""
    for needle, label in COMMANDS:
        if needle in cmdline:
            return label
    if name in NAMES:
        return NAMES[name]
    if name.startswith(("kworker", "ksoftirq", "rcu_", "kswapd", "migration", "kdamond")):
        return "the kernel's threads"
    if "python" in name:
        return "other Python (testbed, helpers)"
    return OTHER


def what_container(name: str | None) -> str:
    """A container by its name with the number left out; one this engine does not know
    is an app's container inside a test server."""
    if not name:
        return NESTED
    return "container " + re.sub(r"\d+(?=(-|$))", "N", name)


def cpu_ticks(stat: str) -> tuple[str, str, int, int]:
    """From /proc/PID/stat: the command's name, its parent's pid, its own CPU ticks, and
    those of its children that have ended."""
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    return name, fields[1], int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def process_totals(
    processes: Mapping[str, tuple[str, str, int, int, str]],
) -> dict[str, tuple[str, float]]:
    """pid -> (what, CPU seconds) from pid -> (name, parent pid, own ticks, ended
    children's ticks, command line). ansible-playbook counts its ended children (its
    workers, ssh); a worker (an ansible-playbook whose parent is one) counts only there,
    once it has ended, so that nothing counts twice."""
    found: dict[str, tuple[str, float]] = {}
    for pid, (name, parent, own, children, cmdline) in processes.items():
        with_children = WITH_CHILDREN in cmdline
        if with_children and WITH_CHILDREN in processes.get(parent, ("", "", 0, 0, ""))[4]:
            continue
        ticks = own + (children if with_children else 0)
        found[pid] = (what_process(cmdline, name), ticks / TICKS)
    return found


_SCOPE = re.compile(r"/docker-[0-9a-f]{12,64}\.scope(/|$)", re.MULTILINE)


def in_container(cgroup: str) -> bool:
    """Whether a process's /proc/PID/cgroup puts it in a Docker container (counted with
    the container's cgroup, not as a process of this machine): /docker/ID with the
    cgroupfs driver, /system.slice/docker-ID.scope with systemd's (cgroup v2)."""
    return "/docker/" in cgroup or _SCOPE.search(cgroup) is not None


def machine_seconds(proc_stat: str) -> float:
    """All CPUs' busy time from /proc/stat's first line (everything but idle and iowait)."""
    fields = [int(v) for v in proc_stat.split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user nice system idle iowait irq softirq steal
    return busy / TICKS


def delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """What each counter grew by; a counter that is new grew by all it has."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v > before.get(k, 0.0)}


def add(totals: dict[str, float], sample: Mapping[str, float]) -> None:
    for key, seconds in sample.items():
        totals[key] += seconds


def report_lines(samples: Iterable[Mapping[str, float]], cores: int) -> list[str]:
    """The table: share of the CPU used, core-seconds, what used it (largest first)."""
    totals: dict[str, float] = defaultdict(float)
    wall = 0.0
    for sample in samples:
        wall = max(wall, float(sample.get("t", 0.0)))
        add(totals, {k: float(v) for k, v in sample.items() if k != "t"})
    used = sum(totals.values())
    if wall <= 0 or used <= 0:
        return ["where the CPU went: no samples"]
    lines = [
        f"where the CPU went: {used:.0f} core-s used in {wall:.0f} s on {cores} cores "
        f"({used / (wall * cores):.0%} of what they had)",
        "  share  core-s  what",
    ]
    for key, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        if seconds >= 0.5:
            lines.append(f"  {seconds / used:5.0%}  {seconds:6.0f}  {key}")
    return lines


def read_samples(lines: Iterable[str]) -> list[dict[str, float]]:
    """The sampler's lines; one that does not read (cut short when it was stopped) is
    left out."""
    samples = []
    for line in lines:
        try:
            sample = json.loads(line)
        except ValueError:
            continue
        if isinstance(sample, dict):
            samples.append(sample)
    return samples


# Reading the machine (not unit-tested beyond a smoke run: it is what /proc says).


def container_names() -> dict[str, str]:
    try:
        out = subprocess.run(  # nosec B603 B607: a fixed command line
            ["docker", "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def container_seconds() -> dict[str, float]:
    """Each container cgroup's CPU time, by container id."""
    found: dict[str, float] = {}
    if CGROUP_V1.is_dir():
        for usage in CGROUP_V1.glob("*/cpuacct.usage"):
            try:
                found[usage.parent.name] = int(usage.read_text()) / 1e9
            except (OSError, ValueError):
                continue
    elif CGROUP_V2.is_dir():
        for stat in CGROUP_V2.glob("docker-*.scope/cpu.stat"):
            try:
                usec = stat.read_text().split("usage_usec ", 1)[1].split()[0]
                found[stat.parent.name[len("docker-") : -len(".scope")]] = int(usec) / 1e6
            except (OSError, ValueError, IndexError):
                continue
    return found


def process_seconds() -> dict[str, tuple[str, float]]:
    """This machine's processes outside containers: pid -> (what, CPU seconds)."""
    found: dict[str, tuple[str, str, int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if in_container((entry / "cgroup").read_text()):
                continue
            name, parent, own, children = cpu_ticks((entry / "stat").read_text())
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        found[entry.name] = (name, parent, own, children, cmdline)
    return process_totals(found)


@dataclass(frozen=True)
class Reading:
    """The machine's CPU counters at one moment: each container cgroup's (by id), each
    process's outside containers (pid -> (what, seconds)), and all CPUs' busy time."""

    containers: Mapping[str, float]
    processes: Mapping[str, tuple[str, float]]
    machine: float


def grown(before: Reading, after: Reading, names: Mapping[str, str]) -> dict[str, float]:
    """What used the CPU between two readings, by what (containers by their `names`,
    id -> name); what the machine's busy time grew by beyond that counts as OTHER."""
    used: dict[str, float] = defaultdict(float)
    for cid, seconds in delta(before.containers, after.containers).items():
        used[what_container(names.get(cid))] += seconds
    for pid, (what, seconds) in after.processes.items():
        grew = seconds - before.processes[pid][1] if pid in before.processes else seconds
        if grew > 0:
            used[what] += grew
    rest = (after.machine - before.machine) - sum(used.values())
    if rest > 0:
        used[OTHER] += rest
    return dict(used)


def read() -> Reading:
    return Reading(
        container_seconds(), process_seconds(), machine_seconds(Path("/proc/stat").read_text())
    )


def sample_forever(path: Path, interval: float = INTERVAL) -> None:
    names = container_names()
    last = read()
    asked = set(last.containers)
    started = time.monotonic()
    with path.open("w") as out:
        while True:
            time.sleep(interval)
            now = read()
            if any(cid not in asked for cid in now.containers):
                names.update(container_names())
                asked.update(now.containers)  # the apps' containers stay unknown: ask once
            used = grown(last, now, names)
            last = now
            record: dict[str, float] = {"t": round(time.monotonic() - started, 1)}
            record.update({k: round(v, 2) for k, v in used.items() if v >= 0.01})
            out.write(json.dumps(record) + "\n")
            out.flush()


def main(argv: list[str]) -> int:
    if len(argv) not in {2, 3} or argv[0] not in {"sample", "report"}:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[1])
    if argv[0] == "sample":
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(KeyboardInterrupt):
            sample_forever(path, float(argv[2]) if len(argv) == 3 else INTERVAL)
        return 0
    lines = path.read_text().splitlines() if path.exists() else []
    print("\n".join(report_lines(read_samples(lines), os.cpu_count() or 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
