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
from collections import deque
from collections.abc import Callable, Mapping, MutableSequence, Sequence
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.melk_docker import masked, parse_state, read_env_values, state_argv
from ansible.module_utils.melk_http import BODY_READ, get
from ansible.module_utils.melk_module import Runner, finish, module_runner

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
  - It returns O(healthy) and the last status. An unhealthy URL fails the task only with
    O(fail_unhealthy) (the healthcheck role's gate, wait and watch, one task each), with
    RV(msg) saying why; otherwise the caller decides.
  - Redirects are not followed; a 3xx is a status like any other.
options:
  url:
    description: URL to probe, for example C(http://127.0.0.1:18001/health).
    type: str
    required: true
  host:
    description: Host header of the probes (a name the edge routes by, for an app with
      C(proxy_server_names)); empty for the URL's own host.
    type: str
    default: ''
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
  since:
    description:
      - With O(mode=watch), the moment the window counts from, in seconds since the epoch
        on the managed host's clock (the switch's C(applied_at)); the watch ends at
        O(since) plus O(seconds), after at least one probe. 0, from the first probe.
      - The traffic moved at the switch, so the window that matters starts there, not when
        this task got going.
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
  wait_interval:
    description:
      - Seconds between probes until the first healthy answer (O(mode=wait) and the wait of
        O(mode=ready)); unset, O(interval). A release that is still starting refuses the
        connection at once, so a short one costs nothing and sees it ready sooner.
    type: float
  timeout:
    description: Seconds one probe may take before it counts as no answer.
    type: float
    default: 5
  status_codes:
    description: Status codes that count as healthy (default any 2xx).
    type: list
    elements: int
  mask_file:
    description:
      - An env file (KEY=VALUE lines) on the host whose values are masked in the bodies and
        Location headers of RV(probes); when it cannot be read, bodies and Locations are
        left out.
    type: path
  label:
    description: What is probed, in words (for example C(new release 1a2b3c4d5e6f (slot
      green))), for RV(msg); empty, the URL.
    type: str
    default: ''
  fail_unhealthy:
    description: Fail the task when the result is unhealthy, with RV(msg) as its message.
      The result (RV(probes) included) is registered all the same.
    type: bool
    default: false
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
probes:
  description:
    - The last probes (up to 5), oldest first, each with C(status) (-1 for no answer),
      C(at) (UTC time), C(location) (the Location header), C(body) (its first 200
      bytes) and C(error) (why there was no answer), for a person to read when the
      check failed.
  returned: always
  type: list
  elements: dict
msg:
  description: >-
    The verdict in words, for example C(health check failed: new release
    1a2b3c4d5e6f (slot green) was not healthy within 30 s; last probe of
    http://127.0.0.1:18002/health gave HTTP 503.)
  returned: always
  type: str
state:
  description: The container's state with O(container) (running, restarts, status, exit_code),
    or empty when it was not found.
  returned: when O(container) is set and the probes were healthy
  type: dict
"""

MODES = ("wait", "watch", "ready")
# How many probes the result keeps, and how much of each body.
KEPT_PROBES = 5
BODY_BYTES = 200
# A body is read up to BODY_READ (melk_http), masked, then cut to BODY_BYTES (masking
# the cut text could leave the start of a value that the cut split).
# A deadline missed by less than this is met. The loop's times are sums of clock readings,
# off by about 1e-15 s from the exact ones: without it, a window of 6 s probed every 0.1 s
# ended at 5.999999999999995 s and sent one more probe 3e-15 s after the last.
CLOCK_TOLERANCE = 1e-6

ARGUMENT_SPEC: dict[str, Any] = {
    "url": {"type": "str", "required": True},
    "host": {"type": "str", "default": ""},
    "mode": {"type": "str", "default": "wait", "choices": list(MODES)},
    "seconds": {"type": "float", "required": True},
    "watch_seconds": {"type": "float", "default": 0.0},
    "since": {"type": "float", "default": 0.0},
    "container": {"type": "str"},
    "interval": {"type": "float", "default": 1.0},
    "wait_interval": {"type": "float"},
    "timeout": {"type": "float", "default": 5.0},
    "status_codes": {"type": "list", "elements": "int"},
    "mask_file": {"type": "path"},
    "label": {"type": "str", "default": ""},
    "fail_unhealthy": {"type": "bool", "default": False},
}

# Jinja's truncate filter, as the messages used it: cut at a word, "..." appended, unless the
# text is at most LENGTH + LEEWAY characters long.
TRUNCATE_LENGTH = 160
TRUNCATE_LEEWAY = 5

# (status, error): status -1 with a reason when no HTTP answer came
Probe = Callable[[], "tuple[int, str]"]


def healthy_codes(codes: Sequence[int] | None) -> list[int]:
    """The status codes that count as healthy: the given ones, or any 2xx."""
    return list(codes) if codes else list(range(200, 300))


def finished(mode: str, healthy: bool, elapsed: float, seconds: float) -> bool:
    """Whether the loop ends after a probe with this outcome at this time."""
    over = elapsed >= seconds - CLOCK_TOLERANCE
    if mode == "wait":
        return healthy or over
    return not healthy or over


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
        if finished(mode, healthy, elapsed, seconds):
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
    wait_interval: float | None = None,
) -> dict[str, Any]:
    """Wait up to seconds for a healthy answer (a probe every wait_interval, default
    interval), then watch for watch_seconds (a probe every interval)."""
    waited = probe_loop(probe, "wait", seconds, wait_interval or interval, codes, clock, sleep)
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


def window_left(seconds: float, since: float, now: float) -> float:
    """The part of a watch window of seconds from since (0: from now) still ahead at now."""
    if since <= 0:
        return seconds
    return max(0.0, min(seconds, since + seconds - now))


def state_ok(state: Mapping[str, Any]) -> bool:
    """A container that runs and has never restarted."""
    return bool(state) and bool(state["running"]) and state["restarts"] == 0


def judge_container(result: Mapping[str, Any], state: Mapping[str, Any]) -> dict[str, Any]:
    """The probes' result with the container's state: unhealthy, decided in phase
    'container', unless the container runs and has never restarted."""
    judged = {**result, "state": dict(state)}
    if not state_ok(state):
        judged.update(healthy=False, phase="container")
    return judged


def truncated(text: str, length: int = TRUNCATE_LENGTH, end: str = "...") -> str:
    """text cut at a word boundary to at most length characters, end included, as
    Jinja's truncate filter does; unchanged when it is at most length + leeway long."""
    if len(text) <= length + TRUNCATE_LEEWAY:
        return text
    return text[: length - len(end)].rsplit(" ", 1)[0] + end


def number(value: float) -> str:
    """A number of seconds as a person writes it: 30, 2.5."""
    return f"{value:g}"


def last_answer(result: Mapping[str, Any]) -> str:
    """What the last probe got: an HTTP status, or no answer and why."""
    if result["status"] > 0:
        return f"HTTP {result['status']}"
    return f"no answer ({truncated(str(result.get('error') or ''))})"


def verdict(result: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """The result in words: healthy, or why the health check failed."""
    label = params.get("label") or params["url"]
    if result["healthy"]:
        return f"healthy: {label}"
    url = params["url"]
    if result["phase"] == "container":
        state = result.get("state") or {}
        return (
            f"health check failed: {label} is {state.get('status', 'gone')} "
            f"(exit code {state.get('exit_code', '?')}, restarted {state.get('restarts', '?')} "
            f"times) after {number(params['watch_seconds'])} s."
        )
    if result["phase"] == "wait":
        why = f"was not healthy within {number(params['seconds'])} s; last probe of {url} gave"
    elif params["mode"] == "ready":
        why = (
            f"turned unhealthy during the {number(params['watch_seconds'])} s watch; "
            f"last probe of {url} gave"
        )
    else:
        why = f"turned unhealthy during the {number(params['seconds'])} s watch; {url} gave"
    return f"health check failed: {label} {why} {last_answer(result)}."


def params_error(params: Mapping[str, Any]) -> str:
    """'' when the URL and the numbers make sense, else what is wrong with them."""
    errors = [
        f"{key} must be above 0, got {params[key]}"
        for key in ("interval", "timeout", "wait_interval")
        if params.get(key) is not None and params[key] <= 0
    ]
    errors += [
        f"{key} must not be below 0, got {params[key]}"
        for key in ("seconds", "watch_seconds", "since")
        if (params.get(key) or 0) < 0
    ]
    if not str(params.get("url", "")).startswith(("http://", "https://")):
        errors.append(f"url must be an http:// or https:// URL, got {params.get('url')!r}")
    return "; ".join(errors)


def excerpt(body: bytes, values: Sequence[str] | None) -> str:
    """The first BODY_BYTES bytes of a body as text, values masked first; None for
    values: the values could not be read, so nothing of the body is shown."""
    if values is None:
        return ""
    text: str = masked(body[:BODY_READ].decode("utf-8", errors="replace"), values)
    return text.encode("utf-8")[:BODY_BYTES].decode("utf-8", errors="ignore")


def seen_probe(
    status: int,
    error: str,
    location: str,
    body: bytes,
    values: Sequence[str] | None,
    at: float,
) -> dict[str, Any]:
    """One probe as the result shows it (see RETURN: probes)."""
    return {
        "status": status,
        "at": time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z",
        "location": masked(location, values) if values is not None else "",
        "body": excerpt(body, values),
        "error": error,
    }


def http_probe(
    url: str,
    timeout: float,
    seen: MutableSequence[dict[str, Any]] | None = None,
    values: Sequence[str] | None = (),
    wall: Callable[[], float] = time.time,
    host: str = "",
) -> Probe:
    """One GET of url per call (with the Host header ``host`` when given): (status, '') or
    (-1, why there was no answer). Each probe is also appended to seen (seen_probe), with
    values masked."""
    headers = {"Host": host} if host else {}

    def probe() -> tuple[int, str]:
        at = wall()
        status, error, location, body = get(url, timeout, headers)
        if seen is not None:
            seen.append(seen_probe(status, error, location or "", body, values, at))
        return status, error

    return probe


def run(
    params: Mapping[str, Any],
    runner: Runner,
    probe: Probe | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Probe as params ask, then check the container; a result for exit_json."""
    error = params_error(params)
    if error:
        return {"failed": True, "changed": False, "msg": f"health_probe: {error}"}
    seen: deque[dict[str, Any]] = deque(maxlen=KEPT_PROBES)
    warnings: list[str] = []
    if probe is None:
        values: list[str] | None = []
        if params.get("mask_file"):
            values, why = read_env_values(params["mask_file"])
            if why:
                values = None
                warnings.append(f"the probes' bodies are not shown: {why}")
        probe = http_probe(
            params["url"], params["timeout"], seen, values, host=params.get("host") or ""
        )
    codes = healthy_codes(params["status_codes"])
    if params["mode"] == "ready":
        result = ready_loop(
            probe,
            params["seconds"],
            params["watch_seconds"],
            params["interval"],
            codes,
            clock,
            sleep,
            params.get("wait_interval"),
        )
    else:
        every = params["interval"]
        seconds = params["seconds"]
        if params["mode"] == "wait":
            every = params.get("wait_interval") or every
        else:
            seconds = window_left(seconds, params.get("since") or 0.0, wall())
        looped = probe_loop(probe, params["mode"], seconds, every, codes, clock, sleep)
        result = {**looped, "phase": params["mode"]}
    if params["container"] and result["healthy"]:
        rc, out, _err = runner(state_argv(params["container"]))
        result = judge_container(result, parse_state(rc, out))
    failed = bool(params.get("fail_unhealthy")) and not result["healthy"]
    return {
        "changed": False,
        **result,
        "probes": list(seen),
        "warnings": warnings,
        "msg": verdict(result, params),
        "failed": failed,
    }


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    finish(module, run(module.params, module_runner(module)))


if __name__ == "__main__":
    main()
