"""Run the repository's playbooks on the controller against hosts that are never reached.

Every host points at a local TCP port that is bound but not listening, so a task that
contacts a host shows up as UNREACHABLE: a test of "refused before any host is touched"
needs no Docker engine and no SSH server. The result is read with the JSON callback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def unreachable_vars(port: int) -> dict[str, object]:
    """Inventory vars that point a host at 127.0.0.1:port (which refuses connections)."""
    return {
        "ansible_host": "127.0.0.1",
        "ansible_port": port,
        "ansible_user": "nobody",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
    }


def playbook_env(directory: Path) -> dict[str, str]:
    """This checkout's ansible.cfg, the JSON callback (with custom stats), temporary and
    control files under directory, a short connection timeout."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_SHOW_CUSTOM_STATS": "true",
        "ANSIBLE_LOCAL_TEMP": str(directory / "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(directory / "cp"),
        "ANSIBLE_TIMEOUT": "5",
    }


def json_result(stdout: str, stderr: str) -> dict[str, Any]:
    """The JSON callback's result, or a failure that shows what ansible-playbook said."""
    try:
        result: dict[str, Any] = json.loads(stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"ansible-playbook printed no JSON:\n{stderr[-3000:]}") from None
    return result
