"""What the app_deploy and rollback Molecule scenarios share: their releases,
the state they check on the server, and the scan of Ansible's log for the secret.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from testbed.app import release_sha

SENTINEL = "molecule-sentinel-123"  # app_env's secret in both scenarios
V1 = release_sha("v1")
V2 = release_sha("v2")
STATE_DIR = "/opt/melk-ai"
SLOT_PORTS = {"blue": 18001, "green": 18002}

# GET a URL from inside the server (its python3), print the body.
FETCH = (
    'python3 -c "import sys, urllib.request\n'
    'print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())" {url}'
)


def read_state(host: Any) -> dict[str, Any]:
    """The release history on the server (testinfra host)."""
    return dict(json.loads(host.file(f"{STATE_DIR}/releases.json").content_string))


def ansible_log_lines() -> list[str]:
    """Ansible's log of the scenario, up to the recap of its last playbook run:
    testinfra's own inventory dump (which holds app_env) is logged after it."""
    log = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.log"
    lines = log.read_text().splitlines()
    last_recap = max(i for i, line in enumerate(lines) if "PLAY RECAP" in line)
    return lines[: last_recap + 2]


def secret_leaks(lines: list[str]) -> list[str]:
    """Lines holding the secret, with the secret masked."""
    return [line.replace(SENTINEL, "<SECRET>")[:300] for line in lines if SENTINEL in line]
