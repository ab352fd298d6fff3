#!/usr/bin/python
"""Ansible module app_oneoff: run one command in a one-off container of a release's image.

playbooks/run.yml runs it with the serving release's image, its env file and the network
its container is on. The docker CLI's argument list is built by melk_docker.oneoff_argv:
the command reaches the container as the list it is, with no shell between. The command's
exit code is returned, not turned into a failure: the caller prints the output first.
The environment is passed as the env file's path; it is never read or returned.

This file runs on the managed host, whose Python may be older than the controller's: keep
it to syntax and library calls of Python 3.8 (new-style types only inside annotations).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.melk_docker import (
    TIMED_OUT,
    failure,
    masked,
    missing,
    network_argv,
    oneoff_argv,
    output_tail,
    read_env_values,
    rm_argv,
)
from ansible.module_utils.melk_module import Runner, finish, module_runner

DOCUMENTATION = r"""
module: app_oneoff
short_description: Run a command in a one-off container of an image and return its output
description:
  - Runs O(command) in a new container named O(name) from O(image) (already on the host,
    never pulled), with the environment file O(env_file), waits for it and removes it
    (C(docker run --rm)). The command is passed as a list, without a shell.
  - With O(network_from), the container joins the network of that container (the serving
    release's), so it reaches what the app reaches.
  - The command's exit code is returned in RV(exit_code) and does not fail the task; a
    command still running after O(timeout) seconds is stopped (SIGTERM, SIGKILL 10 s
    later) and its container removed.
  - With O(mask_env), the values of O(env_file) are masked in everything returned (the
    file is read on the host; its values are never returned); O(output_lines) returns the
    last lines of the output in RV(output_tail).
  - In check mode nothing runs.
options:
  name:
    description: Name of the one-off container; unique per run.
    type: str
    required: true
  image:
    description: Image reference to run, present on the host.
    type: str
    required: true
  command:
    description: The command and its arguments.
    type: list
    elements: str
    required: true
  env_file:
    description: Environment file on the host (mode 0600), read by docker at start.
    type: path
  network_from:
    description:
      - A container whose network the one-off container joins (its network mode); docker's
        default network when that container is gone.
    type: str
  labels:
    description: Labels of the container.
    type: dict
    default: {}
  timeout:
    description: Seconds the command may run; 0 for no limit.
    type: int
    default: 0
  volumes:
    description: Volumes as for C(docker run --volume), for example C(melk-ai-data:/data).
    type: list
    elements: str
    default: []
  mask_env:
    description:
      - Mask the values of O(env_file) (4 characters or longer) in the output returned; when
        the file cannot be read, no output is returned.
    type: bool
    default: false
  output_lines:
    description: How many of the output's last lines RV(output_tail) holds; 0 for none.
    type: int
    default: 0
attributes:
  check_mode:
    description: Runs nothing in check mode.
    support: full
author:
  - melk-ai deploy maintainers
"""

EXAMPLES = r"""
- name: Run a command in the serving release's image
  app_oneoff:
    name: melk-ai-run-20261205T204000
    image: registry.example/melk-ai:4f2c9e1d0b7a8c6e5f4d3c2b1a0f9e8d7c6b5a49
    command: [python3, -c, "print('hi')"]
    env_file: /opt/melk-ai/app.env
    network_from: melk-ai-blue
    timeout: 3600
  register: oneoff
"""

RETURN = r"""
exit_code:
  description: The command's exit code (docker's own 125-127 when it could not run it).
  returned: when the command ran
  type: int
stdout_lines:
  description: What the command wrote to stdout.
  returned: when the command ran
  type: list
  elements: str
stderr_lines:
  description: What the command (or docker) wrote to stderr.
  returned: when the command ran
  type: list
  elements: str
output_tail:
  description: >-
    The last O(output_lines) lines of stdout, then of stderr (each prefixed
    "stderr: "), masked with O(mask_env).
  returned: when the command ran
  type: list
  elements: str
timed_out:
  description: Whether the command was stopped at O(timeout).
  returned: when the command ran
  type: bool
network:
  description: The network the container joined (empty for docker's default).
  returned: always
  type: str
"""

ARGUMENT_SPEC: dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "image": {"type": "str", "required": True},
    "command": {"type": "list", "elements": "str", "required": True},
    "env_file": {"type": "path"},
    "network_from": {"type": "str"},
    "labels": {"type": "dict", "default": {}},
    "timeout": {"type": "int", "default": 0},
    "volumes": {"type": "list", "elements": "str", "default": []},
    "mask_env": {"type": "bool", "default": False},
    "output_lines": {"type": "int", "default": 0},
}


def stopped_at_timeout(rc: int, elapsed: float, timeout: int) -> bool:
    """Whether timeout(1) stopped the command: its exit codes, at or past the timeout."""
    return timeout > 0 and rc in TIMED_OUT and elapsed >= timeout


def describe(rc: int, timed_out: bool, timeout: int) -> str:
    """What happened to the command, naming its exit code."""
    if timed_out:
        return f"the command ran past its timeout of {timeout} s and was stopped (exit code {rc})"
    if rc == 0:
        return "the command exited with exit code 0"
    if rc == 125:
        return "docker could not start the container (exit code 125)"
    if rc == 126:
        return "the command could not be invoked (exit code 126)"
    if rc == 127:
        return "the command was not found in the image (exit code 127)"
    return f"the command failed with exit code {rc}"


def network_of(container: str, runner: Runner) -> tuple[str, list[str]]:
    """The network mode of container: ('' and a warning when it cannot be read)."""
    rc, out, err = runner(network_argv(container))
    if rc == 0 and out.strip():
        return out.strip(), []
    why = "it does not exist" if missing(err) else failure("docker inspect", rc, err)
    return "", [f"the network of {container} is unknown ({why}): docker's default network is used"]


def run(
    params: Mapping[str, Any],
    check_mode: bool,
    runner: Runner,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Run the command; a result for exit_json (failed=True only for bad parameters)."""
    command = [str(part) for part in params.get("command") or []]
    if not command or not command[0]:
        return {"failed": True, "changed": False, "msg": "command must not be empty"}
    timeout = int(params.get("timeout") or 0)
    network: str = ""
    warnings: list[str] = []
    if params.get("network_from"):
        network, warnings = network_of(str(params["network_from"]), runner)
    if check_mode:
        return {
            "changed": False,
            "network": network,
            "warnings": warnings,
            "msg": "not run in check mode",
        }
    name = str(params["name"])
    argv = oneoff_argv(
        name,
        str(params["image"]),
        command,
        params.get("env_file"),
        network or None,
        params.get("labels") or {},
        timeout,
        params.get("volumes") or [],
    )
    started = clock()
    rc, out, err = runner(argv)
    timed_out = stopped_at_timeout(rc, clock() - started, timeout)
    if timed_out:
        runner(rm_argv(name))  # the docker client is gone; its container may still run
    out, err, withheld = shown_output(params, out, err)
    return {
        "changed": True,
        "exit_code": rc,
        "stdout_lines": out.splitlines(),
        "stderr_lines": err.splitlines(),
        "output_tail": output_tail(out, err, int(params.get("output_lines") or 0), []),
        "timed_out": timed_out,
        "network": network,
        "warnings": warnings + withheld,
        "msg": describe(rc, timed_out, timeout),
    }


def shown_output(params: Mapping[str, Any], out: str, err: str) -> tuple[str, str, list[str]]:
    """The output as it may be returned: with mask_env, the env file's values masked, or
    nothing (and a warning) when the file cannot be read."""
    if not params.get("mask_env"):
        return out, err, []
    values, error = read_env_values(params.get("env_file"))
    if error:
        return "", "", [f"the output is withheld: {error}, so its values cannot be masked"]
    return masked(out, values), masked(err, values), []


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    finish(module, run(dict(module.params), module.check_mode, module_runner(module)))


if __name__ == "__main__":
    main()
