#!/usr/bin/python
"""Ansible module health_probe: HTTP health probes run in a loop on the managed host.

Why a module and not ansible.builtin.uri in an until loop: each uri probe is a round trip
from the controller (about 0.4 s here), so probes could not come closer than interval plus
that, a watch window overshot by a probe, and a release that broke was seen up to 1.4 s
late. Here one task probes for the whole window on the host itself.

This file runs on the managed host, whose Python may be older than the controller's: keep
it to syntax and library calls of Python 3.8 (new-style types only inside annotations).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: health_probe
short_description: Probe an HTTP URL from the managed host until healthy, or for a window
description:
  - C(wait) probes until the URL answers one of O(status_codes) or O(seconds) have passed
    (wall clock); C(watch) probes for O(seconds) and stops at the first answer that is not
    one of O(status_codes); C(ready) is C(wait) followed by a C(watch) of O(watch_seconds)
    from the first healthy answer, the health gate of a new release in one task.
  - With O(container), after the probes it reads that Docker container's state; the result
    is healthy only if the container runs and has never restarted (a release that crashed
    and came back between two probes would otherwise pass).
  - The module never fails on an unhealthy URL; it returns O(healthy) and the last status,
    so the caller decides (the healthcheck role asserts with a message).
  - Redirects are not followed; a 3xx is a status like any other.
options:
  url:
    description: URL to probe, for example C(http://127.0.0.1:18001/health).
    type: str
    required: true
  mode:
    description: C(wait) until healthy, C(watch) that it stays healthy, or C(ready) for both.
    type: str
    choices: [wait, watch, ready]
    default: wait
  seconds:
    description: The deadline of C(wait) and C(ready), or the window of C(watch).
    type: float
    required: true
  watch_seconds:
    description: With O(mode=ready), how long the URL must stay healthy after its first
      healthy answer (the window counts from that answer).
    type: float
    default: 0
  container:
    description: Name of a Docker container whose state is checked after the probes
      (C(docker inspect)); it must be running with a restart count of 0.
    type: str
  interval:
    description: Seconds between the start of one probe and the next.
    type: float
    default: 1
  timeout:
    description: Seconds one probe may take before it counts as no answer.
    type: float
    default: 5
  status_codes:
    description: Status codes that count as healthy (default any 2xx).
    type: list
    elements: int
attributes:
  check_mode:
    description: Probing changes nothing, so it runs in check mode too.
    support: full
author:
  - melk-ai deploy maintainers
"""

EXAMPLES = r"""
- name: Wait up to 30 s for the new release to answer healthy
  health_probe:
    url: http://127.0.0.1:18001/health
    mode: wait
    seconds: 30
    interval: 0.5
  register: probe

- name: Watch the public endpoint for 10 s
  health_probe:
    url: http://127.0.0.1/health
    mode: watch
    seconds: 10
"""

RETURN = r"""
healthy:
  description: wait, the last probe was healthy; watch, every probe was.
  returned: always
  type: bool
status:
  description: HTTP status of the last probe, -1 when it got no answer.
  returned: always
  type: int
attempts:
  description: Number of probes sent.
  returned: always
  type: int
elapsed:
  description: Seconds from the first probe to the result.
  returned: always
  type: float
error:
  description: Why the last probe got no answer (empty when it got one).
  returned: always
  type: str
phase:
  description: Where the result was decided, C(wait), C(watch) or C(container).
  returned: always
  type: str
state:
  description: The container's state with O(container) (running, restarts, status, exit_code),
    or empty when it was not found.
  returned: when O(container) is set and the probes were healthy
  type: dict
"""

MODES = ("wait", "watch", "ready")
# docker inspect --format: four fields only (the whole config would include the app's env)
INSPECT_FORMAT = "{{.State.Running}} {{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}"
NO_ANSWER = -1

# (status, error): status -1 with a reason when no HTTP answer came
Probe = Callable[[], "tuple[int, str]"]


def healthy_codes(codes: Sequence[int] | None) -> list[int]:
    """The status codes that count as healthy: the given ones, or any 2xx."""
    return list(codes) if codes else list(range(200, 300))


def finished(mode: str, healthy: bool, elapsed: float, seconds: float, interval: float) -> bool:
    """Whether the loop ends after a probe with this outcome at this time."""
    if mode == "wait":
        return healthy or elapsed >= seconds
    return not healthy or elapsed >= seconds


def probe_loop(
    probe: Probe,
    mode: str,
    seconds: float,
    interval: float,
    codes: Sequence[int],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Probe until finished(); the result without the module's bookkeeping."""
    if mode not in ("wait", "watch"):
        raise ValueError(f"unknown mode {mode!r}")
    start = clock()
    attempts = 0
    while True:
        began = clock()
        status, error = probe()
        attempts += 1
        healthy = status in codes
        elapsed = clock() - start
        if finished(mode, healthy, elapsed, seconds, interval):
            return {
                "healthy": healthy,
                "status": status,
                "error": error,
                "attempts": attempts,
                "elapsed": round(elapsed, 3),
            }
        # the last probe falls on the deadline or the end of the window
        pause = min(interval - (clock() - began), seconds - elapsed)
        if pause > 0:
            sleep(pause)


def ready_loop(
    probe: Probe,
    seconds: float,
    watch_seconds: float,
    interval: float,
    codes: Sequence[int],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Wait up to seconds for a healthy answer, then watch for watch_seconds."""
    waited = probe_loop(probe, "wait", seconds, interval, codes, clock, sleep)
    if not waited["healthy"] or watch_seconds <= 0:
        return {**waited, "phase": "wait"}
    # The window counts from the healthy answer: the watch's first probe is one
    # interval after it, its last at the end of the window.
    pause = min(interval, watch_seconds)
    sleep(pause)
    watched = probe_loop(probe, "watch", watch_seconds - pause, interval, codes, clock, sleep)
    return {
        **watched,
        "attempts": waited["attempts"] + watched["attempts"],
        "elapsed": round(waited["elapsed"] + pause + watched["elapsed"], 3),
        "phase": "watch",
    }


def parse_state(rc: int, stdout: str) -> dict[str, Any]:
    """The container state from docker inspect with INSPECT_FORMAT; {} when not found."""
    fields = stdout.split()
    if rc != 0 or len(fields) != 4:
        return {}
    running, restarts, status, exit_code = fields
    return {
        "running": running == "true",
        "restarts": int(restarts) if restarts.isdigit() else -1,
        "status": status,
        "exit_code": int(exit_code) if exit_code.lstrip("-").isdigit() else None,
    }


def state_ok(state: dict[str, Any]) -> bool:
    """A container that runs and has never restarted."""
    return bool(state) and state["running"] and state["restarts"] == 0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect as its own status instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http_probe(url: str, timeout: float) -> Probe:
    """One GET of url per call: (status, '') or (-1, why there was no answer)."""
    opener = urllib.request.build_opener(_NoRedirect())

    def probe() -> tuple[int, str]:
        try:
            with opener.open(url, timeout=timeout) as response:
                response.read()
                return int(response.status), ""
        except urllib.error.HTTPError as err:
            return int(err.code), ""
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            return NO_ANSWER, f"{type(err).__name__}: {reason}"

    return probe


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "mode": {"type": "str", "default": "wait", "choices": list(MODES)},
            "seconds": {"type": "float", "required": True},
            "watch_seconds": {"type": "float", "default": 0.0},
            "container": {"type": "str"},
            "interval": {"type": "float", "default": 1.0},
            "timeout": {"type": "float", "default": 5.0},
            "status_codes": {"type": "list", "elements": "int"},
        },
        supports_check_mode=True,
    )
    params = module.params
    if (
        params["interval"] <= 0
        or params["timeout"] <= 0
        or min(params["seconds"], params["watch_seconds"]) < 0
    ):
        module.fail_json(
            msg="interval and timeout must be above 0, seconds and watch_seconds not below 0"
        )
    probe = http_probe(params["url"], params["timeout"])
    codes = healthy_codes(params["status_codes"])
    if params["mode"] == "ready":
        result = ready_loop(
            probe, params["seconds"], params["watch_seconds"], params["interval"], codes
        )
    else:
        result = {
            **probe_loop(probe, params["mode"], params["seconds"], params["interval"], codes),
            "phase": params["mode"],
        }
    if params["container"] and result["healthy"]:
        rc, out, _err = module.run_command(
            ["docker", "inspect", "--format", INSPECT_FORMAT, params["container"]]
        )
        result["state"] = parse_state(rc, out)
        if not state_ok(result["state"]):
            result.update(healthy=False, phase="container")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
