"""Unit tests import the filter plugins and the modules straight from the repository.

filter_plugins/, library/ and the roles' library/ are not packages (Ansible loads their
files by path), so their directories go first on sys.path: ``import release_history``,
``import deploy_lock``, ``import health_probe``.

The modules import their shared code as ``ansible.module_utils.melk_*``, the name under
which Ansible ships module_utils/ to the host (ansible.cfg's module_utils setting;
AnsiballZ bundles every ``ansible.module_utils`` import it finds). The tests import the
same files under the same name: ansible.module_utils is a regular package, and
module_utils/ joins its __path__, where Python looks for its submodules. The modules thus
have one import and no fallback, and a test runs exactly the code that Ansible ships.

Under mutmut (make mutation), a mutant is named after its file's package path
(``filter_plugins.release_history.x_resolve_release__mutmut_3``) and only a function
whose module has that name takes it. There, the bare names are made aliases of the
modules imported under their package path, so that the tests call the mutated code;
``ansible.module_utils.melk_*`` likewise becomes an alias of ``module_utils.melk_*``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import ansible.module_utils
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIRS = (ROOT / "filter_plugins", ROOT / "library", *sorted(ROOT.glob("roles/*/library")))

for directory in PLUGIN_DIRS:
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))

if str(ROOT / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(ROOT / "module_utils"))


class _PackagePathAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``name`` as the module ``qualified[name]`` (its package path)."""

    def __init__(self, qualified: dict[str, str]) -> None:
        self.qualified = qualified

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.qualified:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.qualified[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """The module was executed by its import under the package path."""


def package_paths(root: Path, directories: Sequence[Path]) -> dict[str, str]:
    """Bare module name -> its dotted path from root, for every file in directories."""
    return {
        file.stem: ".".join((*directory.relative_to(root).parts, file.stem))
        for directory in directories
        for file in sorted(directory.glob("*.py"))
    }


def module_utils_paths(root: Path) -> dict[str, str]:
    """ansible.module_utils.NAME -> module_utils.NAME, for every file in module_utils/."""
    return {
        f"ansible.module_utils.{file.stem}": f"module_utils.{file.stem}"
        for file in sorted((root / "module_utils").glob("*.py"))
    }


# No example database in the work tree, and no flaky deadlines on a busy machine.
settings.register_profile("unit", database=None, deadline=None)
# Under mutmut a property test runs once per mutant of every function it reaches: fewer
# examples there (the exact-value tests beside them do most of the killing).
settings.register_profile("mutation", parent=settings.get_profile("unit"), max_examples=25)

if "MUTANT_UNDER_TEST" in os.environ:
    sys.meta_path.insert(
        0, _PackagePathAlias({**package_paths(ROOT, PLUGIN_DIRS), **module_utils_paths(ROOT)})
    )
    settings.load_profile("mutation")
else:
    settings.load_profile("unit")
