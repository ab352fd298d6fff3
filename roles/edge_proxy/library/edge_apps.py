#!/usr/bin/python
"""Ansible module edge_apps: read the edge records of the apps on this host.

Each app provisioned on a host has a record ``<dir>/<app>.json`` (one line of JSON, written
by edge_proxy; filter_plugins/edge_records.py says what it holds) beside its switch file
``<dir>/<app>.upstream``.  This module only reads them, in one task: the records by app,
and the apps with a switch file but no record (provisioned before records existed).
Deciding what they allow is the filters' job.

This file runs on the managed host, whose Python may be older than the controller's: keep
it to syntax and library calls of Python 3.8 (new-style types only inside annotations).
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: edge_apps
short_description: Read the edge records of the apps on a host
description:
  - Reads every C(<name>.json) record in O(path) and lists the apps that have a
    C(<name>.upstream) switch file but no record. Changes nothing.
  - A record that is not a JSON object naming its own app fails the module with the file's
    name, so a damaged record never lets another app take its ports.
options:
  path:
    description: The edge's state directory (switch files and records). Missing means no app.
    type: path
    required: true
attributes:
  check_mode:
    description: Reads only.
    support: full
author:
  - melk-ai deploy maintainers
"""

EXAMPLES = r"""
- name: Read the apps on this host
  edge_apps:
    path: /etc/nginx/edge-proxy
  register: apps
"""

RETURN = r"""
records:
  description: The records, by app name.
  returned: always
  type: dict
unrecorded:
  description: Apps with a switch file and no record, sorted.
  returned: always
  type: list
  elements: str
"""

ARGUMENT_SPEC: dict[str, Any] = {"path": {"type": "path", "required": True}}


def record_error(name: str, record: object) -> str:
    """'' when ``record`` (parsed from ``<name>.json``) is an object naming app ``name``."""
    if not isinstance(record, dict) or record.get("app") != name:
        return f"{name}.json is not an edge record of app {name}"
    return ""


def read_apps(path: str) -> dict[str, Any]:
    """``{records, unrecorded}`` of the directory ``path`` (ValueError on a bad record)."""
    try:
        entries = sorted(os.listdir(path))
    except FileNotFoundError:
        entries = []
    records: dict[str, Any] = {}
    switched = set()
    for entry in entries:
        name, ext = os.path.splitext(entry)
        if ext == ".upstream":
            switched.add(name)
        elif ext == ".json":
            with open(os.path.join(path, entry), encoding="utf-8") as handle:
                try:
                    record = json.load(handle)
                except ValueError:
                    record = None
            error = record_error(name, record)
            if error:
                raise ValueError(f"{error}: repair or remove {os.path.join(path, entry)}")
            records[name] = record
    return {"records": records, "unrecorded": sorted(switched - set(records))}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = read_apps(module.params["path"])
    except (OSError, ValueError) as error:
        module.fail_json(msg=f"edge_apps: {error}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
