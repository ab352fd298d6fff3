"""cdrunner cancelled (issue 14, item 7): on SIGTERM or SIGINT, as a cancelled CD
job sends them, the SSH key file, the vault password and the SSH control sockets
are gone, and each control master was told to exit (ssh -O exit).

A real cdrunner process (python -m cdrunner's main) with a stand-in for
ansible_runner.run that holds a real Unix socket in the control directory and
waits; a stand-in `ssh` on PATH records how it is called.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cdrunner_fakes import KEY, KNOWN

from cdrunner import ROOT

CHILD = r"""
import socket, sys, time
from pathlib import Path
from types import SimpleNamespace
from cdrunner.cli import main

def run(**kw):
    private = Path(kw["private_data_dir"])
    master = socket.socket(socket.AF_UNIX)
    master.bind(str(private / "cp" / "0123abcd"))
    master.listen()
    print("READY", private, flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sys.argv[1] == "honours" and kw["cancel_callback"]():
            return SimpleNamespace(rc=254, status="canceled")
        time.sleep(0.05)
    return SimpleNamespace(rc=0, status="successful")

sys.exit(main(["deploy", "--sha", "a" * 40, "--artifacts-dir", sys.argv[2]], run=run))
"""

FAKE_SSH = '#!/bin/sh\necho "$@" >> "$(dirname "$0")/ssh.log"\n'


def start(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "DEPLOY_HOST": "10.0.0.5",
        "DEPLOY_USER": "deploy",
        "DEPLOY_SSH_KEY": KEY,
        "DEPLOY_KNOWN_HOSTS": KNOWN,
        "ANSIBLE_VAULT_PASSWORD": "vault-pw",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(tmp_path / "artifacts")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("READY "), line + process.stdout.read()
    private = Path(line.split(" ", 1)[1].strip())
    for name in ("ssh/id", "ssh/known_hosts", "secrets/vault-password", "cp/0123abcd"):
        assert (private / name).exists(), f"{name} exists while the run goes on"
    return process, private


def gone_within(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not path.exists()


def ssh_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "bin" / "ssh.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_removes_key_and_sockets_and_stops_the_run(
    tmp_path: Path, signum: signal.Signals
) -> None:
    process, private = start(tmp_path, "honours")
    process.send_signal(signum)
    output, _ = process.communicate(timeout=20)
    assert not private.exists(), output
    assert process.returncode == 4, output
    assert f"stopped by signal {int(signum)}" in output
    assert ssh_calls(tmp_path) == [f"-o ControlPath={private}/cp/0123abcd -O exit cdrunner-cleanup"]


def test_cleanup_happens_at_the_signal_even_if_the_run_does_not_stop(tmp_path: Path) -> None:
    """The playbook does not stop at once: the key and sockets go at the first
    signal all the same; a second signal ends cdrunner."""
    process, private = start(tmp_path, "ignores")
    process.send_signal(signal.SIGTERM)
    assert gone_within(private, 10), "the private dir outlived the signal"
    assert process.poll() is None, "still running: cleanup came first"
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert len(ssh_calls(tmp_path)) == 1
