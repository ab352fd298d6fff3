"""Vars plugin: extra vars given inline on the command line are literal.

ansible-core 2.19 trusts what `-e key=value` and `-e '{...}'` carry as templates,
so `-e "sha={{ lookup('pipe', ...) }}"` would run the command on the controller
the first time anything reads `sha` (the input check included). This plugin marks
those values unsafe (never templated), as `!unsafe` does in a file, before any
play reads them: the input check then sees the text itself and refuses it as bad
input. `-e @FILE` stays as it is: a file is trusted like an inventory file, and
`!unsafe` in it keeps a value literal.

It changes the extra vars ansible-core loaded once per run (the dict that
`ansible.utils.vars.load_extra_vars` keeps and the VariableManager holds), in
place, at the first call of any vars plugin: while the inventory is parsed, before
the VariableManager exists. If ansible-core stops keeping that dict, the plugin
stops the run (fails closed) rather than let templates through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from ansible import context
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.parsing.splitter import parse_kv
from ansible.plugins.vars import BaseVarsPlugin
from ansible.utils.unsafe_proxy import wrap_var
from ansible.utils.vars import load_extra_vars

DOCUMENTATION = """
    name: melk_literal_cli
    short_description: extra vars given inline on the command line are never templated
    description:
      - Marks the values of C(-e key=value) and C(-e '{...}') unsafe, so a template in
        them is text, never run. C(-e @FILE) is left as it is.
    options:
      stage:
        description: Runs at every stage, the first call (inventory parsing) included.
        default: all
        choices: [all]
"""


def inline_option(raw: str) -> bool:
    """Whether an -e option carries its variables inline (not @FILE)."""
    return not raw.startswith("@")


def keys_of(raw: str, load: Callable[[str], Any]) -> Iterable[str]:
    """The top-level variable names one -e option sets (nothing is templated)."""
    if raw.startswith("@"):
        data = load(raw[1:])
    elif raw[0] in "[{":
        data = load_inline(raw)
    else:
        data = parse_kv(raw)
    return [str(key) for key in data] if isinstance(data, Mapping) else []


def load_inline(raw: str) -> Any:
    from ansible.parsing.utils.yaml import from_yaml

    return from_yaml(raw)


def inline_names(options: Iterable[str], load: Callable[[str], Any]) -> set[str]:
    """Names whose value comes from an inline option: the last option that sets a
    name wins, as in load_extra_vars."""
    last: dict[str, bool] = {}
    for raw in options:
        if raw:
            for key in keys_of(raw, load):
                last[key] = inline_option(raw)
    return {key for key, inline in last.items() if inline}


def make_literal(extra_vars: MutableMapping[str, Any], names: Iterable[str]) -> None:
    for name in names:
        if name in extra_vars:
            extra_vars[name] = wrap_var(extra_vars[name])


# The extra vars already made literal in this process: Ansible calls vars plugins for
# every host and group on every task (about 0.1 s of a five-host deploy went to parsing
# the -e options again); the dict load_extra_vars keeps is done once.
_DONE: list[MutableMapping[str, Any]] = []


def literal_cli_extra_vars(loader: Any) -> None:
    options = [
        to_text(o, errors="surrogate_or_strict") for o in context.CLIARGS.get("extra_vars", ())
    ]
    if not any(o and inline_option(o) for o in options):
        return
    extra_vars = load_extra_vars(loader)
    if any(done is extra_vars for done in _DONE):
        return
    if load_extra_vars(loader) is not extra_vars:
        raise AnsibleError(
            "melk_literal_cli: this ansible-core does not keep its extra vars in one place; "
            "inline -e values cannot be kept literal. Pass them in a file: -e @FILE "
            "(with !unsafe where a value must stay literal)."
        )
    make_literal(extra_vars, inline_names(options, lambda path: loader.load_from_file(path)))
    _DONE.append(extra_vars)


class VarsModule(BaseVarsPlugin):  # type: ignore[misc]  # untyped base
    is_stateless = True

    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> dict[str, Any]:
        super().get_vars(loader, path, entities)
        literal_cli_extra_vars(loader)
        return {}
