"""proxy_upstream runs without AnsiballZ: action_plugins/melk_remote.py (found beside this file; the
usual module action where it is not)."""

from __future__ import annotations

from ansible.plugins.action.normal import ActionModule as Usual
from ansible.plugins.loader import action_loader

ActionModule = action_loader.get("melk_remote", class_only=True) or Usual
