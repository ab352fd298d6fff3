"""The hosts and groups of the repository's inventory, read as ansible-playbook
reads them, without their variables (no vault password needed, nothing
decrypted): for the DEPLOY_HOST fill-in rule (cdrunner.inputs.placeholders)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Shape:
    hosts: tuple[str, ...]
    groups: tuple[str, ...]  # all and ungrouped left out


def inventory_shape(source: Path) -> Shape:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    manager = InventoryManager(loader=DataLoader(), sources=[str(source)])
    hosts = tuple(sorted(h.name for h in manager.get_hosts(ignore_restrictions=True)))
    groups = tuple(sorted(g for g in manager.groups if g not in ("all", "ungrouped")))
    return Shape(hosts, groups)
