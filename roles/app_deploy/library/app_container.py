#!/usr/bin/python
"""Ansible module app_container: start or retire a release's container with the docker CLI.

Why not community.docker.docker_container: a deploy always recreates its slot's container,
so that module's comparison of the wanted and the running config buys nothing, and it costs
a round trip of 1.8 s here against 0.5 s for this (make bench, one host). Its result also
holds the container's whole config, the app's environment included, so every call needed
no_log; this module never reads or returns the environment.

This file runs on the managed host, whose Python may be older than the controller's: keep
it to syntax and library calls of Python 3.8 (new-style types only inside annotations).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.melk_docker import (
    address_argv,
    failure,
    image_rm_argv,
    missing,
    parse_state,
    rm_argv,
    run_argv,
    runtime_hiccup,
    state_argv,
    stop_argv,
)
from ansible.module_utils.melk_files import read_text
from ansible.module_utils.melk_module import Runner, finish, module_runner

DOCUMENTATION = r"""
module: app_container
short_description: Start a release's container in its slot, or stop and remove one
description:
  - C(started) removes any container of that name (the slot gets no traffic while this
    runs, as the caller switches the proxy only after a health gate) and runs a new one from
    O(image), detached, without pulling. The docker CLI's argument list is built from the
    options; no shell is involved, so labels and paths are passed as they are.
  - When the container runtime fails to set up the container's first process (C(docker run)
    exits 125 with "OCI runtime create failed", so the app never ran), the container is
    removed and run once more, with a warning; any other failure fails at once.
  - C(stopped) stops the container (SIGTERM, O(stop_timeout) seconds, then SIGKILL) and keeps it.
  - C(absent) stops it the same way and removes it, then removes O(remove_images) (images the
    release history no longer retains); an image still in use is left with a warning.
  - The container's environment comes from O(env_file) on the host and is never returned.
options:
  name:
    description: Container name, for example C(melk-ai-blue). Required, except with
      O(state=absent), where leaving it out removes only O(remove_images) (after a deploy
      that keeps the release before running as the standby).
    type: str
  state:
    description: What the container should be.
    type: str
    choices: [started, stopped, absent]
    default: started
  image:
    description: Image reference to run. Required for O(state=started).
    type: str
  published_ports:
    description: Port mappings as for C(docker run -p), for example C(127.0.0.1:18001:8000).
    type: list
    elements: str
    default: []
  env_file:
    description: Environment file on the host (mode 0600), read by docker at start.
    type: path
  labels:
    description: Labels of the container.
    type: dict
    default: {}
  restart_policy:
    description: Docker restart policy, for example C(unless-stopped).
    type: str
    default: "no"
  stop_timeout:
    description: Seconds between SIGTERM and SIGKILL when the container is stopped.
    type: int
    default: 10
  remove_images:
    description: Images to remove once the container is gone (O(state=absent)) or once the new
      one runs (O(state=started)); an image in use is kept with a warning.
    type: list
    elements: str
    default: []
  keep_images_of:
    description: With O(remove_images), release histories (C(releases.json) files, glob patterns)
      of the other apps on the host; an image of O(remove_images) that one of them names (its
      current release or an entry) is kept, so that apps sharing an image repository never
      remove each other's retained releases.
    type: list
    elements: str
    default: []
  own_history:
    description: This app's release history, skipped among the files O(keep_images_of) matches.
    type: path
  volumes:
    description: Volumes as for C(docker run --volume), for example C(melk-ai-data:/data).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Reports what would change and changes nothing.
    support: full
author:
  - melk-ai deploy maintainers
"""

EXAMPLES = r"""
- name: Start the new release in slot green
  app_container:
    name: melk-ai-green
    image: registry.example/melk-ai:4f2c9e1d0b7a8c6e5f4d3c2b1a0f9e8d7c6b5a49
    published_ports: ["127.0.0.1:18002:8000"]
    env_file: /home/deploy/melk-ai/app.env
    labels:
      io.melk.sha: 4f2c9e1d0b7a8c6e5f4d3c2b1a0f9e8d7c6b5a49
    restart_policy: unless-stopped

- name: Remove images no longer retained, keeping every container (the standby runs on)
  app_container:
    state: absent
    remove_images: [registry.example/melk-ai:0123456789abcdef0123456789abcdef01234567]

- name: Retire the old release and the images no longer retained
  app_container:
    name: melk-ai-blue
    state: absent
    remove_images: [registry.example/melk-ai:0123456789abcdef0123456789abcdef01234567]
"""

RETURN = r"""
ip:
  description: With O(state=started), the new container's address on the Docker bridge ('' if none).
  returned: when O(state=started) and the container started
  type: str
  sample: 172.17.0.3
container_id:
  description: Id of the container started.
  returned: when O(state=started) and not in check mode
  type: str
removed_images:
  description: The images of O(remove_images) that were removed.
  returned: when O(state=absent), or O(state=started) with O(remove_images)
  type: list
  elements: str
"""

STATES = ("started", "stopped", "absent")

ARGUMENT_SPEC: dict[str, Any] = {
    "name": {"type": "str"},
    "state": {"type": "str", "default": "started", "choices": list(STATES)},
    "image": {"type": "str"},
    "published_ports": {"type": "list", "elements": "str", "default": []},
    "env_file": {"type": "path"},
    "labels": {"type": "dict", "default": {}},
    "restart_policy": {"type": "str", "default": "no"},
    "stop_timeout": {"type": "int", "default": 10},
    "remove_images": {"type": "list", "elements": "str", "default": []},
    "keep_images_of": {"type": "list", "elements": "str", "default": []},
    "own_history": {"type": "path"},
    "volumes": {"type": "list", "elements": "str", "default": []},
}
REQUIRED_IF = [("state", "started", ("name", "image")), ("state", "stopped", ("name",))]


def _fail(what: str, rc: int, err: str) -> dict[str, Any]:
    return {"failed": True, "changed": False, "msg": failure(what, rc, err)}


def decide_stop(state: str, exists: bool, running: bool, images: list[str]) -> dict[str, Any]:
    """What stopped/absent does to a container found (exists, running), and the images."""
    absent = state == "absent"
    return {
        "stop": running,
        "remove": absent and exists,
        "images": images if absent else [],
        "changed": running or (absent and exists) or (absent and bool(images)),
    }


def remove(name: str, runner: Runner) -> tuple[bool, dict[str, Any] | None]:
    """docker rm -f name: (removed, failure result or None)."""
    rc, _out, err = runner(rm_argv(name))
    if rc == 0:
        return True, None
    if missing(err):
        return False, None
    return False, _fail(f"removing container {name}", rc, err)


def images_named(text: str) -> set[str]:
    """The image references a release history (releases.json text) names: its current
    release's and every entry's; none for text that is not a history."""
    try:
        data = json.loads(text)
    except ValueError:
        return set()
    if not isinstance(data, dict):
        return set()
    entries = [data.get("current"), *(data.get("history") or [])]
    return {str(e["image"]) for e in entries if isinstance(e, dict) and e.get("image")}


def kept_by_others(patterns: Sequence[str], own: str | None) -> set[str]:
    """The images the histories matching patterns name, own history left out."""
    own_path = os.path.realpath(own) if own else None
    kept: set[str] = set()
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if os.path.realpath(path) != own_path:
                kept |= images_named(read_text(path) or "")
    return kept


def prunable(params: Mapping[str, Any]) -> list[str]:
    """remove_images without the images another app's history names."""
    kept = kept_by_others(params.get("keep_images_of") or [], params.get("own_history"))
    return [image for image in params.get("remove_images") or [] if image not in kept]


def remove_images(images: list[str], runner: Runner) -> tuple[list[str], list[str]]:
    """Remove each image: (the ones removed, a warning for each one kept)."""
    removed: list[str] = []
    warnings: list[str] = []
    for image in images:
        rc, _out, err = runner(image_rm_argv(image))
        if rc == 0:
            removed.append(image)
        elif not missing(err):
            warnings.append(f"image {image} was kept: {err.strip()}")
    return removed, warnings


def start(params: Mapping[str, Any], check_mode: bool, runner: Runner) -> dict[str, Any]:
    """Replace any container of that name with a new one from params['image']."""
    name = params["name"]
    if not params.get("image"):
        return {"failed": True, "changed": False, "msg": "image is required to start a container"}
    if check_mode:
        return {"changed": True}
    _removed, failed = remove(name, runner)
    if failed:
        return failed
    argv = run_argv(
        name,
        params["image"],
        params.get("published_ports") or [],
        params.get("env_file"),
        params.get("labels") or {},
        params.get("restart_policy") or "no",
        int(params.get("stop_timeout", 10)),
        params.get("volumes") or [],
    )
    rc, out, err = runner(argv)
    retried = ""
    if runtime_hiccup(rc, err):
        # The runtime failed before the app's process started (the container was
        # created, never run): remove it and run it once more.
        retried = err.strip()
        _removed, failed = remove(name, runner)
        if failed:
            return failed
        rc, out, err = runner(argv)
    if rc != 0:
        return _fail(f"starting container {name} from {params['image']}", rc, err)
    # Its address, for the edge's switch (one docker call here instead of a task there);
    # '' when it has none (it exited at once): the switch then reads it itself.
    rc_ip, ip, _err = runner(address_argv(name))
    result = {"changed": True, "container_id": out.strip(), "ip": ip.strip() if rc_ip == 0 else ""}
    if retried:
        result["warnings"] = [
            f"starting {name} failed in the container runtime, retried once: {retried}"
        ]
    if params.get("remove_images"):
        result["removed_images"], pruned = remove_images(prunable(params), runner)
        result["warnings"] = result.get("warnings", []) + pruned
    return result


def stop(params: Mapping[str, Any], check_mode: bool, runner: Runner) -> dict[str, Any]:
    """Stop (state stopped) or stop and remove (state absent) the container; prune images.

    Without a name (state absent only), the images alone."""
    name = params.get("name")
    if not name:
        return prune_only(prunable(params), check_mode, runner)
    rc, out, err = runner(state_argv(name))
    if rc != 0 and not missing(err):
        return _fail(f"inspecting container {name}", rc, err)
    exists = rc == 0
    running = bool(parse_state(rc, out).get("running"))
    absent = params["state"] == "absent"
    plan = decide_stop(params["state"], exists, running, prunable(params))
    if check_mode:
        if absent:
            return {"changed": plan["changed"], "removed_images": plan["images"]}
        return {"changed": plan["changed"]}
    if plan["stop"]:
        rc, _out, err = runner(stop_argv(name, int(params.get("stop_timeout", 10))))
        if rc != 0 and not missing(err):
            return _fail(f"stopping container {name}", rc, err)
    if not absent:
        return {"changed": plan["changed"]}
    if plan["remove"]:
        _removed, failed = remove(name, runner)
        if failed:
            return failed
    removed, warnings = remove_images(plan["images"], runner)
    return {
        "changed": bool(running or exists or removed),
        "removed_images": removed,
        "warnings": warnings,
    }


def prune_only(images: list[str], check_mode: bool, runner: Runner) -> dict[str, Any]:
    """Remove images no longer retained, touching no container."""
    if check_mode:
        return {"changed": bool(images), "removed_images": images}
    removed, warnings = remove_images(images, runner)
    return {"changed": bool(removed), "removed_images": removed, "warnings": warnings}


def run(params: Mapping[str, Any], check_mode: bool, runner: Runner) -> dict[str, Any]:
    """Do what params ask; a result for exit_json (failed=True to fail, warnings to warn)."""
    if params.get("state", "started") == "started":
        return start(params, check_mode, runner)
    return stop(params, check_mode, runner)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True
    )
    finish(module, run(dict(module.params), module.check_mode, module_runner(module)))


if __name__ == "__main__":
    main()
