"""Running the project's playbooks as a user does, for demo, bench, e2e and faults.

One environment (this checkout's ansible.cfg, no colour, SSH control sockets in
a directory of the caller's own), one command line (ansible-playbook from the
repository root), one runner (output kept, and in a log file when asked; the
task it is at readable while it runs; a time limit), and the readers of the
default callback's output.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from testbed import ROOT, ledger
from testbed.console import INDENT, Status, Ticker, duration, rel
from testbed.load import Traffic, served_chain

VENV_BIN = ROOT / ".venv" / "bin"
# Commands run from the repository root; a bare tool name runs the venv's.
PROGRAM = ".venv/bin/ansible-playbook"
TASK_LINE = re.compile(r"TASK \[(?:[\w.-]+ : )?(.*)\] \*+")


def ansible_env(control_dir: Path, callbacks: Sequence[str] = (), **extra: str) -> dict[str, str]:
    """The user's environment (ANSIBLE_STRATEGY etc. pass through) with this
    checkout's ansible.cfg, no colour, SSH control sockets in `control_dir`,
    `callbacks` added to the enabled ones, and `extra` on top."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir),
    )
    if callbacks:
        enabled = [c for c in env.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if c]
        env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join([*enabled, *callbacks])
    env.update(extra)
    return env


def playbook_args(name: str, inventory: Path, *extra: str, program: str = PROGRAM) -> list[str]:
    """ansible-playbook of playbooks/NAME, as typed at the repository root."""
    return [program, "-i", rel(inventory), f"playbooks/{name}", *extra]


@dataclass
class Run:
    """One finished command: its output is stdout and stderr as they came."""

    args: list[str]
    rc: int
    output: str
    seconds: float
    log: Path | None = None
    started: float = 0.0  # time.monotonic() at start
    started_wall: float = 0.0  # time.time() at start
    cpu: float = 0.0  # user + system CPU seconds of it and the children it waited for

    @property
    def command(self) -> str:
        return shlex.join(self.args)


class Command:
    """One command (most often ansible-playbook) from the repository root; the
    task it is at can be read while it runs (`task`, `progress`)."""

    def __init__(
        self,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        log: Path | None = None,
        timeout: float = 600.0,
    ) -> None:
        self.args = list(args)
        self.env = env
        self.log = log
        self.timeout = timeout
        self.task = "starting"
        self.started = 0.0

    @property
    def command(self) -> str:
        return shlex.join(self.args)

    def argv(self) -> list[str]:
        """The args to execute: a relative program path is the checkout's, a
        bare Ansible tool name the venv's."""
        program = self.args[0]
        if "/" in program:
            program = str(ROOT / program)
        elif (VENV_BIN / program).exists():
            program = str(VENV_BIN / program)
        return [program, *self.args[1:]]

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def progress(self) -> tuple[str, str]:
        """The default status line: time so far and the task at."""
        return f"{INDENT}... {duration(self.elapsed())}: {self.task}", self.task

    def spawn(self) -> subprocess.Popen[str]:
        """Start it without waiting (to kill it, or to race it); output merged."""
        self.started = time.monotonic()
        return subprocess.Popen(
            self.argv(),
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def _follow(self, line: str) -> None:
        match = TASK_LINE.match(line)
        if match and not match.group(1).startswith("Validating arguments"):
            self.task = match.group(1)

    def run(self, status: Status | None = None) -> Run:
        """Run it to the end (killed after `timeout`), with `status` shown
        while it runs when given."""
        lines: list[str] = []
        started_wall = time.time()
        with contextlib.ExitStack() as stack:
            out: IO[str] | None = stack.enter_context(self.log.open("w")) if self.log else None
            if status is not None:
                stack.enter_context(Ticker(status))
            proc = stack.enter_context(self.spawn())
            watchdog = threading.Timer(self.timeout, proc.kill)
            watchdog.daemon = True
            watchdog.start()
            assert proc.stdout is not None
            for line in proc.stdout:
                if out is not None:
                    out.write(line)
                    out.flush()
                lines.append(line)
                self._follow(line)
            rc, cpu = wait_with_usage(proc)
            watchdog.cancel()
        seconds = self.elapsed()
        ledger.record(self.args, seconds, cpu)
        if rc < 0 and seconds >= self.timeout:
            lines.append(f"\n(stopped after {self.timeout:.0f} s, its time limit)\n")
        return Run(
            self.args, rc, "".join(lines), seconds, self.log, self.started, started_wall, cpu
        )


def wait_with_usage(proc: subprocess.Popen[str]) -> tuple[int, float]:
    """Wait for `proc`: its exit code, and the CPU time (user + system) it and the
    children it waited for used (its workers and ssh, for ansible-playbook). 0.0 when
    the watchdog's kill reaped it first."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return proc.wait(), 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def live_status(traffic: Traffic, command: Command) -> Status:
    """The status line of a command under load: the traffic so far and the
    task the command is at."""

    def line() -> tuple[str, str]:
        snap = traffic.snapshot()
        text = (
            f"{INDENT}live: {snap.total} requests, {len(snap.failed)} failed, "
            f"serving {served_chain(snap)}   [{duration(command.elapsed())}: {command.task}]"
        )
        return text, text

    return line


# ----------------------------------------------------- reading the output


def host_results(output: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(status, host, result) of every task result in the default callback's
    output (results in YAML, as ansible.cfg asks)."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    lines = output.splitlines()
    head = re.compile(r"^(ok|changed|fatal|failed|skipping): \[([^\]]+)\].*?=>\s*(.*)$")
    for i, line in enumerate(lines):
        match = head.match(line)
        if not match:
            continue
        status, host, inline = match.groups()
        text = inline
        if not inline:
            block = []
            for nxt in lines[i + 1 :]:
                if not nxt.startswith("    ") and nxt.strip():
                    break
                if not nxt.strip():
                    break
                block.append(nxt[4:])
            text = "\n".join(block)
        try:
            data = yaml.safe_load(text) if text else {}
        except yaml.YAMLError:
            data = {"msg": text}
        if isinstance(data, dict):
            found.append((status, host, data))
    return found


def error_message(output: str) -> str:
    """The message of the last failed task (the run's verdict)."""
    failures = [r for r in host_results(output) if r[0] in {"fatal", "failed"}]
    if not failures:
        return ""
    return " ".join(str(failures[-1][2].get("msg", "")).split())


def recap(output: str) -> list[str]:
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("PLAY RECAP"):
            return [" ".join(x.split()) for x in lines[i + 1 :] if x.strip()]
    return []


def task_count(output: str) -> int:
    """Task results the play printed (every host and task, skipped ones too)."""
    return len(re.findall(r"^(?:ok|changed|skipping|fatal|failed): \[", output, re.M))


def slowest_tasks(output: str, limit: int = 8) -> list[tuple[str, float]]:
    """The task summary of the profile_tasks callback: (task, seconds), slowest first."""
    found = []
    for line in output.splitlines():
        match = re.match(r"^(\S.*?) -{2,} (\d+\.\d+)s$", line.strip())
        if match:
            found.append((match.group(1), float(match.group(2))))
    return sorted(found, key=lambda t: -t[1])[:limit]
