"""The docker CLI as the modules use it: each command line built by one pure function,
and what docker answers parsed by another (Kamal-style: the unit tests assert the exact
command lines). A Runner (melk_module) runs them; no shell is involved, so a label or
a path is passed as it is. Shipped to the managed host with each module that imports it
(see melk_files.py): Python 3.8 syntax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Four fields only: the whole inspect output would include the app's environment.
STATE_FORMAT = "{{.State.Running}} {{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}"
TAG_FORMAT = "{{.Tag}}"
NO_TAG = "<none>"


def run_argv(
    name: str,
    image: str,
    ports: Sequence[str],
    env_file: str | None,
    labels: Mapping[str, Any],
    restart_policy: str,
    stop_timeout: int,
    volumes: Sequence[str] = (),
) -> list[str]:
    """Start a detached container from an image on the host (never pulled)."""
    argv = ["docker", "run", "--detach", "--pull", "never", "--name", name]
    argv += ["--restart", restart_policy, "--stop-timeout", str(stop_timeout)]
    if env_file:
        argv += ["--env-file", env_file]
    for port in ports:
        argv += ["--publish", port]
    for volume in volumes:
        argv += ["--volume", volume]
    for key in sorted(labels):
        argv += ["--label", f"{key}={labels[key]}"]
    argv.append(image)
    return argv


def rm_argv(name: str) -> list[str]:
    """Remove a container, running or not."""
    return ["docker", "rm", "--force", name]


def stop_argv(name: str, timeout: int) -> list[str]:
    """Stop a container: SIGTERM, then SIGKILL after timeout seconds."""
    return ["docker", "stop", "--time", str(timeout), name]


def state_argv(name: str) -> list[str]:
    """The state of a container (parse_state reads the answer)."""
    return ["docker", "inspect", "--type", "container", "--format", STATE_FORMAT, name]


# One line per slot container: its slot and sha labels, state, restarts and address
# (release_history.slot_containers reads it). Never the whole inspect output: it holds
# the app's environment.
SLOT_FORMAT = (
    '{{index .Config.Labels "io.melk.slot"}} {{.State.Running}} {{.RestartCount}} '
    '{{index .Config.Labels "io.melk.sha"}} {{.NetworkSettings.IPAddress}}'
)


def slot_argv(names: list[str]) -> list[str]:
    """The slot lines of containers (SLOT_FORMAT); a missing one prints none."""
    return ["docker", "inspect", "--type", "container", "--format", SLOT_FORMAT, *names]


def address_argv(name: str) -> list[str]:
    """A container's address on the Docker bridge (where the edge's switch sends traffic)."""
    return [
        "docker",
        "inspect",
        "--type",
        "container",
        "--format",
        "{{.NetworkSettings.IPAddress}}",
        name,
    ]


def image_rm_argv(image: str) -> list[str]:
    """Remove an image (refused while a container uses it)."""
    return ["docker", "image", "rm", image]


def image_tags_argv(repository: str) -> list[str]:
    """The tags of a repository's images on the host (parse_tags reads the answer)."""
    return ["docker", "image", "ls", "--format", TAG_FORMAT, repository]


def missing(stderr: str) -> bool:
    """Whether docker said the container or image does not exist."""
    text = stderr.lower()
    return "no such container" in text or "no such image" in text


def runtime_hiccup(rc: int, stderr: str) -> bool:
    """Whether `docker run` failed because the OCI runtime could not set up the
    container's first process (exit 125, "OCI runtime create failed"): nothing of the
    app ran, and the same command usually works at once (seen under load on nested
    engines: "read init-p: connection reset by peer"). Not a bad image or argument."""
    return rc == 125 and "oci runtime create failed" in stderr.lower()


def failure(what: str, rc: int, stderr: str) -> str:
    """The message for a docker command that failed."""
    return f"{what} failed (exit {rc}): {stderr.strip()}"


def parse_state(rc: int, stdout: str) -> dict[str, Any]:
    """The container state from state_argv's answer; {} when there is none."""
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


# A container that restarted and runs again reports exit code 0: the code it last
# exited with is in the engine's die events since the container was created (a
# removed container of the same name died before that).
CREATED_FORMAT = "{{.Created}}"
EXIT_CODE_FORMAT = "{{.Actor.Attributes.exitCode}}"


def created_argv(name: str) -> list[str]:
    """When the container was created (RFC 3339), for die_events_argv's since."""
    return ["docker", "inspect", "--type", "container", "--format", CREATED_FORMAT, name]


def die_events_argv(name: str, since: str, until: float) -> list[str]:
    """The exit codes of the container's deaths from since until until, oldest first.
    until is the host's time (seconds.nanoseconds): the engine reads a relative one
    such as 0s in whole seconds, and missed a death within the current second."""
    return [
        "docker", "events", "--since", since, "--until", f"{until:.9f}",
        "--filter", "type=container", "--filter", f"container={name}",
        "--filter", "event=die", "--format", EXIT_CODE_FORMAT,
    ]  # fmt: skip


def parse_last_exit(stdout: str) -> int | None:
    """The last exit code in die_events_argv's answer; None for none."""
    codes = [line.strip() for line in stdout.splitlines() if line.strip()]
    last = codes[-1] if codes else ""
    return int(last) if last.lstrip("-").isdigit() else None


def parse_tags(stdout: str) -> list[str]:
    """The tags in image_tags_argv's answer, sorted, without untagged images."""
    return sorted(tag for tag in stdout.split() if tag != NO_TAG)


# --------------------------------------------------------------------------- operations
# playbooks/logs.yml and playbooks/run.yml: the serving release's log, and a one-off
# container of its image.

NETWORK_FORMAT = "{{.HostConfig.NetworkMode}}"
# What timeout(1) answers when it stopped the command (124), or had to kill it: it
# then kills its own process group, itself too (137 from a shell, -9 from Python).
TIMED_OUT = (124, 137, -9)


def logs_argv(name: str, lines: int, since: str | None) -> list[str]:
    """The last lines of a container's log, each with docker's timestamp (merge_logs)."""
    argv = ["docker", "logs", "--timestamps", "--tail", str(lines)]
    if since:
        argv += ["--since", since]
    argv.append(name)
    return argv


def merge_logs(stdout: str, stderr: str) -> list[str]:
    """One log from logs_argv's two streams, in time order (stdout first on a tie).

    docker logs writes what the container wrote to stdout and to stderr on its own two
    streams; each line starts with an RFC 3339 timestamp of fixed width (nanoseconds,
    UTC), so sorting the text sorts the time. A line without one (a wrapped line) stays
    after the line before it.
    """
    keyed: list[tuple[str, int, int, str]] = []
    for stream, text in enumerate((stdout, stderr)):
        stamp = ""
        for index, line in enumerate(text.splitlines()):
            first = line.split(" ", 1)[0]
            if len(first) > 20 and first[4:5] == "-" and first[10:11] == "T":
                stamp = first
            keyed.append((stamp, stream, index, line))
    return [line for _stamp, _stream, _index, line in sorted(keyed)]


def network_argv(name: str) -> list[str]:
    """The network mode of a container (its 'docker run --network')."""
    return ["docker", "inspect", "--type", "container", "--format", NETWORK_FORMAT, name]


def oneoff_argv(
    name: str,
    image: str,
    command: Sequence[str],
    env_file: str | None,
    network: str | None,
    labels: Mapping[str, Any],
    timeout: int,
    volumes: Sequence[str] = (),
) -> list[str]:
    """Run a command in a new container of an image on the host (never pulled) and wait
    for it; the container is removed when it ends. With timeout > 0 the docker client is
    stopped after timeout seconds by timeout(1) (SIGTERM, passed on to the command, then
    SIGKILL 10 s later); the caller then removes the container (rm_argv)."""
    argv = ["timeout", "--kill-after=10", str(timeout)] if timeout > 0 else []
    argv += ["docker", "run", "--rm", "--pull", "never", "--name", name]
    if network:
        argv += ["--network", network]
    if env_file:
        argv += ["--env-file", env_file]
    for volume in volumes:
        argv += ["--volume", volume]
    for key in sorted(labels):
        argv += ["--label", f"{key}={labels[key]}"]
    argv.append(image)
    argv += list(command)
    return argv


# --------------------------------------------------------------------------- masking
# What a deploy prints of the app (a release command's output, a failed release's log
# and health answers) has the values of its env file masked. The env file is read on
# the host by the module that prints; its values never leave it.

MASK = "********"
# Shorter values (true, 1, 80) are not masked: they would mask every such word of
# the output and hide nothing secret.
MIN_MASKED = 4


def env_values(text: str) -> list[str]:
    """The values of an env file (docker's --env-file format: KEY=VALUE a line, taken
    literally; blank lines and # comments skipped) that masked() hides, longest first."""
    values = set()
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        value = line.split("=", 1)[1]
        if len(value) >= MIN_MASKED:
            values.add(value)
    return sorted(values, key=lambda value: (-len(value), value))


def masked(text: str, values: Sequence[str]) -> str:
    """text with every occurrence of each value replaced by MASK (longest value first,
    so a value that contains another is masked whole)."""
    for value in sorted(values, key=len, reverse=True):
        if value:
            text = text.replace(value, MASK)
    return text


def read_env_values(path: str | None) -> tuple[list[str], str]:
    """env_values of the file at path: (values, '') or ([], why it could not be read).
    No path: nothing to mask."""
    if not path:
        return [], ""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return env_values(handle.read()), ""
    except OSError as err:
        return [], f"{path} could not be read ({err.strerror or err})"


def output_tail(stdout: str, stderr: str, lines: int, values: Sequence[str]) -> list[str]:
    """The last `lines` lines of a command's output, masked: stdout, then stderr with
    each line prefixed 'stderr: ' (the error a command ends with is last)."""
    out = stdout.splitlines() + ["stderr: " + line for line in stderr.splitlines()]
    return [masked(line, values) for line in out[-lines:]] if lines > 0 else []
