"""Unit tests import the filter plugin and the module straight from the repository.

filter_plugins/, library/ and the roles' library/ are not packages (Ansible loads their
files by path), so their directories go first on sys.path: ``import release_history``,
``import deploy_lock``, ``import health_probe``.
"""

import sys
from pathlib import Path

from hypothesis import settings

ROOT = Path(__file__).resolve().parents[2]

for directory in (ROOT / "filter_plugins", ROOT / "library", *ROOT.glob("roles/*/library")):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))

# No example database in the work tree, and no flaky deadlines on a busy machine.
settings.register_profile("unit", database=None, deadline=None)
settings.load_profile("unit")
