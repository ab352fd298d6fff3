"""cdrunner: the CD entry point. Runs the project's deploy and rollback playbooks
through ansible-runner, streams one line per task and host, writes a Markdown
summary, keeps ansible-runner's artifacts free of secrets and exits with a code
that says what happened (see ``python -m cdrunner --help``)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = ROOT / "playbooks"
ANSIBLE_CFG = ROOT / "ansible.cfg"

__all__ = ["ANSIBLE_CFG", "PLAYBOOKS", "ROOT"]
