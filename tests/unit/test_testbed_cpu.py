"""testbed/cpu.py: where a test run's CPU goes (make test prints it at the end)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import ROOT, cpu

ANSIBLE = "Ansible on this machine (ansible-playbook, its workers, ssh)"


@pytest.mark.parametrize(
    ("cmdline", "name", "what"),
    [
        (".venv/bin/python ansible-playbook playbooks/deploy.yml", "ansible-playboo", ANSIBLE),
        # Molecule's own runs are Ansible's, not Molecule's
        ("python ansible-playbook molecule/default/converge.yml", "python3", ANSIBLE),
        (".venv/bin/python .venv/bin/molecule test -s app_deploy", "molecule", "Molecule"),
        (".venv/bin/python .venv/bin/pytest tests/e2e -q", "pytest", "pytest"),
        (".venv/bin/ansible-lint --offline", "ansible-lint", "lint and security checks"),
        ("wrk -t2 -c64 -d60s http://127.0.0.1/", "wrk", "wrk"),
        ("/usr/sbin/dockerd -H fd://", "dockerd", "this machine's Docker engine"),
        ("docker exec melk-e2e-1 true", "docker", "docker commands"),
        # an SSH master connection Ansible opened (ControlPersist)
        ("ssh: /work/.testbed/bench/cp/4a1b2c3d [mux]", "ssh", cpu.SSH),
        ("docker-registry serve loopback.yml", "docker-registry", "the local registries"),
        ("", "kworker/0:3-events", "the kernel's threads"),
        (".venv/bin/python -m testbed.cpu sample f", "python3", "other Python (testbed, helpers)"),
        ("/bin/sleep 5", "sleep", cpu.OTHER),
    ],
)
def test_what_process(cmdline: str, name: str, what: str) -> None:
    assert cpu.what_process(cmdline, name) == what


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("melk-fault-1", "container melk-fault-N"),
        ("melk-e2e-f3", "container melk-e2e-fN"),
        ("melk-e2e-2-opt1", "container melk-e2e-N-optN"),
        ("melk-mol-app-deploy", "container melk-mol-app-deploy"),
        ("melk-e2e-tls", "container melk-e2e-tls"),
        (None, cpu.NESTED),
    ],
)
def test_what_container(name: str | None, what: str) -> None:
    assert cpu.what_container(name) == what


def test_cpu_ticks_reads_a_name_with_spaces_and_parentheses() -> None:
    fields = ["S", "41", "7", "7", "0", "-1", "4194560"] + ["0"] * 4 + ["120", "30", "500", "60"]
    stat = "4242 (python (a) b) " + " ".join(fields) + " 20 0 1 0"
    assert cpu.cpu_ticks(stat) == ("python (a) b", "41", 150, 560)


def test_cpu_ticks_of_this_process() -> None:
    name, parent, own, children = cpu.cpu_ticks(Path("/proc/self/stat").read_text())
    assert parent == str(os.getppid())
    assert own >= 0 and children >= 0 and name


def test_ansible_counts_its_ended_children_and_its_workers_count_only_there() -> None:
    processes = {
        "10": ("pytest", "1", 100, 900, "python pytest tests/e2e"),
        "20": ("ansible-playboo", "10", 200, 300, "python ansible-playbook deploy.yml"),
        "21": ("ansible-playboo", "20", 50, 10, "python ansible-playbook deploy.yml"),
        "30": ("wrk", "10", 40, 0, "wrk -c64 url"),
    }
    totals = cpu.process_totals(processes)
    assert totals["20"] == (ANSIBLE, 500 / cpu.TICKS)
    assert "21" not in totals  # a worker still running: counted by its parent once it ends
    assert totals["10"] == ("pytest", 100 / cpu.TICKS)  # its ended children are counted elsewhere
    assert totals["30"] == ("wrk", 40 / cpu.TICKS)


def test_machine_seconds_leave_out_idle_and_iowait() -> None:
    line = "cpu  100 10 50 9000 40 5 5 2 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
    assert cpu.machine_seconds(line) == pytest.approx((100 + 10 + 50 + 5 + 5 + 2) / cpu.TICKS)


def test_delta_counts_growth_and_new_counters() -> None:
    assert cpu.delta({"a": 1.0, "b": 5.0, "gone": 3.0}, {"a": 3.5, "b": 5.0, "new": 2.0}) == {
        "a": 2.5,
        "new": 2.0,
    }


def test_report_sums_by_what_and_gives_shares() -> None:
    samples = [
        {"t": 5.0, ANSIBLE: 4.0, "wrk": 1.0},
        {"t": 10.0, ANSIBLE: 6.0, "container melk-fault-N": 5.0, "wrk": 0.2},
    ]
    lines = cpu.report_lines(samples, cores=2)
    assert lines[0] == (
        "where the CPU went: 16 core-s used in 10 s on 2 cores (81% of what they had)"
    )
    assert lines[2:] == [
        f"    62%      10  {ANSIBLE}",
        "    31%       5  container melk-fault-N",
        "     7%       1  wrk",
    ]


def test_a_line_cut_short_is_left_out() -> None:
    lines = ['{"t": 5.0, "wrk": 1.5}', '{"t": 10.0, "wr', "[1, 2]", ""]
    assert cpu.read_samples(lines) == [{"t": 5.0, "wrk": 1.5}]


def test_report_without_samples() -> None:
    assert cpu.report_lines([], cores=2) == ["where the CPU went: no samples"]


def test_sample_then_report_on_this_machine(tmp_path: Path) -> None:
    """The sampler runs beside a busy loop, writes a line per interval with the CPU the
    loop used (other Python), and the report reads it."""
    out = tmp_path / "cpu.jsonl"
    argv = [sys.executable, "-m", "testbed.cpu", "sample", str(out), "1"]
    sampler = subprocess.Popen(argv, cwd=ROOT)
    try:
        spin = "import time\nend = time.monotonic() + 4\nwhile time.monotonic() < end: pass"
        subprocess.run([sys.executable, "-c", spin], check=True, timeout=60)
    finally:
        sampler.terminate()
        sampler.wait(timeout=30)
    samples = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(samples) >= 2, samples  # one a second
    busy = sum(s.get("other Python (testbed, helpers)", 0.0) for s in samples)
    assert busy >= 0.5, samples  # the loop spins for 4 s: up to a core, less on a busy machine
    report = subprocess.run(
        [sys.executable, "-m", "testbed.cpu", "report", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert report.startswith("where the CPU went: "), report
    assert "other Python (testbed, helpers)" in report, report


def test_grown_counts_containers_by_name_processes_by_what_and_the_rest_as_other() -> None:
    before = cpu.Reading(
        {"c1": 10.0, "c2": 5.0}, {"7": ("wrk", 1.0), "8": (ANSIBLE, 2.0)}, machine=100.0
    )
    after = cpu.Reading(
        {"c1": 12.5, "c2": 5.0, "c3": 0.5},  # c3: an app container started meanwhile
        {"7": ("wrk", 3.0), "9": (cpu.SSH, 0.25)},  # 8 ended: its CPU is in the rest
        machine=108.0,
    )
    used = cpu.grown(before, after, {"c1": "melk-bench-1"})
    assert used == {
        "container melk-bench-N": 2.5,
        cpu.NESTED: 0.5,
        "wrk": 2.0,
        cpu.SSH: 0.25,
        cpu.OTHER: 2.75,  # 8 busy seconds, 5.25 of them counted
    }


@pytest.mark.parametrize(
    ("cgroup", "inside"),
    [
        (
            "12:cpu,cpuacct:/docker/4f2c9a1b7e3d5c6a8b9d0e1f\n0::/docker/4f2c9a1b7e3d5c6a8b9d0e1f\n",
            True,
        ),
        # cgroup v2 with systemd's driver, and an app's container inside a test server
        ("0::/system.slice/docker-4f2c9a1b7e3d5c6a8b9d0e1f2a3b4c5d.scope\n", True),
        (
            "0::/system.slice/docker-4f2c9a1b7e3d.scope/system.slice/docker-9a8b7c6d5e4f.scope\n",
            True,
        ),
        # this machine's own: the engine itself, a login session, the root
        ("0::/system.slice/docker.service\n", False),
        ("0::/system.slice/containerd.service\n", False),
        ("0::/user.slice/user-0.slice/session-3.scope\n", False),
        ("1:cpu:/\n0::/\n", False),
    ],
)
def test_in_container_under_either_cgroup_version_and_driver(cgroup: str, inside: bool) -> None:
    assert cpu.in_container(cgroup) is inside
