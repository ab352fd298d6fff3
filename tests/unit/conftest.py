"""Unit tests import the filter plugin and the module straight from the repository.

filter_plugins/, library/ and the roles' library/ are not packages (Ansible loads their
files by path), so their directories go first on sys.path: ``import releases``,
``import deploy_lock``, ``import health_probe``.

The modules import their shared code as ``ansible.module_utils.melk_*``, the name under
which Ansible ships module_utils/ to the host (ansible.cfg's module_utils setting;
AnsiballZ bundles every ``ansible.module_utils`` import it finds). The tests import the
same files under the same name: ansible.module_utils is a regular package, and
module_utils/ joins its __path__, where Python looks for its submodules. The modules thus
have one import and no fallback, and a test runs exactly the code that Ansible ships.
"""

import sys
from pathlib import Path

import ansible.module_utils
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[2]

for directory in (ROOT / "filter_plugins", ROOT / "library", *ROOT.glob("roles/*/library")):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))

if str(ROOT / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(ROOT / "module_utils"))

# No example database in the work tree, and no flaky deadlines on a busy machine.
settings.register_profile("unit", database=None, deadline=None)
settings.load_profile("unit")
