"""make demo: the main job on a local sandbox server, from nothing to a rollback.

    python -m testbed.demo          run the demo (what `make demo` does)
    python -m testbed.demo clean    remove the sandbox (what `make demo-clean` does)

It prepares the test bed (Docker engine, cached base images, a local registry),
builds three releases of the sample app (v1, v2 and a broken one), starts a
sandbox server (a systemd container with SSH and its own Docker engine) whose
edge proxy answers on http://127.0.0.1:$DEMO_PORT (8080 by default), and runs the
project's playbooks against it as a user would: provision, deploy v1, deploy v2
under live traffic, deploy the broken release (rolled back automatically), roll
back to v1 by sha prefix, turn HTTPS on with a certificate from a local CA made
here (https://127.0.0.1:$DEMO_TLS_PORT, 8443 by default), status. It exits
non-zero, saying what, when a step does not behave as expected. Full Ansible
output goes to .testbed/demo/*.log.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from testbed import STATE_DIR, TestbedError, app, engine, images, registry, servers, tls
from testbed.console import INDENT, Status, duration, rel, say, secs, wrap
from testbed.load import Report, recovery_seconds, sent_after, served_chain, under_load
from testbed.playbook import (
    Command,
    Run,
    ansible_env,
    error_message,
    host_results,
    live_status,
    playbook_args,
    recap,
)

# The e2e servers are melk-e2e-*: both can run at once; DEMO_SERVER names
# another sandbox (two demos on one machine).
SERVER = os.environ.get("DEMO_SERVER") or "melk-demo"
DEMO_DIR = STATE_DIR / "demo"
INVENTORY = DEMO_DIR / "inventory.json"
REGISTRY_MARK = DEMO_DIR / "registry-started.json"
STEPS = 10
DEFAULT_PORT = 8080
DEFAULT_TLS_PORT = 8443
TLS_DIR = DEMO_DIR / "tls"
BROKEN_ENV = {"APP_DEGRADE_AFTER_REQUESTS": "100"}
# The broken release's post-switch watch: the live traffic (about 30 requests a
# second) breaks it within a few seconds; the watch stops at the first failure.
BROKEN_VERIFY_SECONDS = 15
VERIFY_SECONDS = 5
PLAYBOOK_TIMEOUT = {"provision.yml": 900.0}


class DemoError(RuntimeError):
    """A step did not behave as expected; the message says how."""


# ------------------------------------------------------------- playbooks


def playbook(step: int, label: str, name: str, *extra: str) -> Command:
    """One ansible-playbook run as a user types it at the repository root (the
    venv's tools on PATH); its output goes to .testbed/demo/STEP-LABEL.log."""
    return Command(
        playbook_args(name, INVENTORY, *extra, program="ansible-playbook"),
        ansible_env(DEMO_DIR / "cp"),
        log=DEMO_DIR / f"{step}-{label}.log",
        timeout=PLAYBOOK_TIMEOUT.get(name, 420.0),
    )


def run_shown(command: Command, status: Status | None = None) -> Run:
    say(f"{INDENT}$ {command.command}")
    return command.run(status or command.progress)


def log_of(run: Run) -> str:
    return rel(run.log) if run.log else "not kept"


def show_recap(run: Run) -> None:
    for line in recap(run.output):
        say(f"{INDENT}recap: {line}")
    say(f"{INDENT}({duration(run.seconds)}, full output: {log_of(run)})")


def run_under_load(url: str, command: Command) -> tuple[Run, Report]:
    """The playbook while a load generator sends requests through the edge
    proxy (a second of traffic before and after), as the e2e tests do."""
    with under_load(url, lead=1.0, max_seconds=600) as traffic:
        run = run_shown(command, live_status(traffic, command))
    say(f"{INDENT}total: {traffic.summary()} ({served_chain(traffic)})")
    return run, traffic


# ------------------------------------------------------------------ steps


def demo_port(variable: str = "DEMO_PORT", default: int = DEFAULT_PORT) -> int:
    raw = os.environ.get(variable, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise DemoError(f"{variable} must be a TCP port number, not {raw!r}")
    return int(raw)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def served_version(port: int) -> str:
    """The version the edge proxy serves now."""
    try:
        url = f"http://127.0.0.1:{port}/version"
        with urllib.request.urlopen(url, timeout=5) as resp:  # nosec B310
            return str(json.loads(resp.read())["version"])
    except (OSError, ValueError, KeyError) as err:
        return f"nothing ({type(err).__name__})"


def listener_pids() -> dict[str, int]:
    """The registry's listeners that run now, by name -> pid."""
    pids: dict[str, int] = {}
    for name in ("loopback", "bridge"):
        try:
            pid = int((registry.DIR / f"{name}.pid").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            continue
        pids[name] = pid
    return pids


def start_registry() -> None:
    """Start the registry and remember the listeners this demo started (and the
    ones an earlier demo run started that still run), for `clean`."""
    before = listener_pids()
    registry.start()
    now = listener_pids()
    try:
        earlier = json.loads(REGISTRY_MARK.read_text())
    except (OSError, ValueError):
        earlier = {}
    ours = {n: p for n, p in earlier.items() if now.get(n) == p}
    ours.update({n: p for n, p in now.items() if before.get(n) != p})
    REGISTRY_MARK.write_text(json.dumps(ours))


class Demo:
    def __init__(self) -> None:
        self.port = demo_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tls_port = demo_port("DEMO_TLS_PORT", DEFAULT_TLS_PORT)
        self.https_url = f"https://127.0.0.1:{self.tls_port}"
        self.group_vars: dict[str, object] = {}
        self.releases: dict[str, str] = {}
        self.step = 0
        self.sandbox_up = False

    def begin(self, title: str) -> None:
        self.step += 1
        say()
        say(f"==> [{self.step}/{STEPS}] {title}")

    def done(self, text: str) -> None:
        say(f"{INDENT}ok: {text}")

    def expect(self, condition: bool, problem: str, run: Run | None = None) -> None:
        if condition:
            return
        if run is not None:
            message = error_message(run.output)
            if message:
                say(f"{INDENT}the playbook said:")
                wrap(message)
            problem += f" (full output: {log_of(run)})"
        raise DemoError(problem)

    # 1
    def prepare(self) -> None:
        self.begin("Preparing the Docker engine, base images, registry and sample releases")
        engine.ensure_engine()
        images.build_all(["server", "app-base"])
        start_registry()
        self.releases = {
            "v1": app.build_release("v1"),
            "v2": app.build_release("v2"),
            "v3-broken": app.build_release("v3-broken", "degrade", BROKEN_ENV),
        }
        for version, sha in self.releases.items():
            say(f"{INDENT}release {version:<10} sha {sha}")
        say(f"{INDENT}(v3-broken passes the health gate, then fails every request once it")
        say(f"{INDENT} has answered 100: it breaks after it gets traffic)")
        self.done(f"releases pushed to the local registry as {app.pull_repository()}:<sha>")

    # 2
    def start_server(self) -> None:
        self.begin(f"Starting the sandbox server {SERVER} (its edge proxy on {self.url})")
        servers.remove(SERVER)  # afresh on every run
        for variable, port in (("DEMO_PORT", self.port), ("DEMO_TLS_PORT", self.tls_port)):
            if not port_free(port):
                raise DemoError(
                    f"port {port} on 127.0.0.1 is in use; free it or choose another one, "
                    f"e.g. {variable}={port + 1} make demo"
                )
        server = servers.start(
            SERVER,
            images.SERVER_TRIXIE.ref,
            # HTTPS (step 8) on the same port inside and out: redirects name it
            ("-p", f"127.0.0.1:{self.tls_port}:{self.tls_port}"),
            http_publish=f"127.0.0.1:{self.port}:80",
        )
        self.sandbox_up = True
        self.group_vars = servers.group_vars(
            {"APP_GREETING": "hello from make demo"}, VERIFY_SECONDS
        )
        servers.write_inventory(INVENTORY, [server], self.group_vars)
        say(f"{INDENT}a Debian 13 systemd container with sshd; user deploy (sudo), no Docker yet")
        say(f"{INDENT}inventory: {rel(INVENTORY)} (ssh deploy@127.0.0.1 -p {server.ssh_port})")
        self.done(f"{SERVER} answers over SSH")

    # 3
    def provision(self) -> None:
        self.begin(f"Provisioning {SERVER}: Docker Engine + Compose v2, edge proxy, deploy dirs")
        run = run_shown(playbook(self.step, "provision", "provision.yml"))
        show_recap(run)
        self.expect(run.rc == 0, f"provision.yml failed (exit {run.rc})", run)
        self.done(f"{SERVER} is ready for deploys")

    # 4
    def deploy_v1(self) -> None:
        self.begin("Deploying v1, the first release")
        start_registry()  # up again if someone stopped it meanwhile
        sha = self.releases["v1"]
        run = run_shown(playbook(self.step, "deploy-v1", "deploy.yml", "-e", f"sha={sha}"))
        show_recap(run)
        self.expect(run.rc == 0, f"deploying v1 failed (exit {run.rc})", run)
        serving = served_version(self.port)
        self.expect(serving == "v1", f"after deploying v1, {self.url} serves {serving}")
        self.done(f"v1 serves on {self.url}")

    # 5
    def deploy_v2(self) -> None:
        self.begin("Deploying v2 under live traffic")
        start_registry()  # up again if someone stopped it meanwhile
        say(f"{INDENT}4 clients send requests through the edge proxy the whole time,")
        say(f"{INDENT}a quarter of them slow ones (400 ms) that are in flight during the switch")
        sha = self.releases["v2"]
        command = playbook(self.step, "deploy-v2", "deploy.yml", "-e", f"sha={sha}")
        run, report = run_under_load(self.url, command)
        show_recap(run)
        self.expect(run.rc == 0, f"deploying v2 failed (exit {run.rc})", run)
        self.expect(report.total > 0, "the live traffic sent no request")
        self.expect(
            not report.failed, f"{len(report.failed)} requests failed during the v2 deploy", run
        )
        self.expect(
            report.versions["v1"] > 0 and report.versions["v2"] > 0,
            f"the traffic should have seen v1, then v2: {report.summary()}",
        )
        serving = served_version(self.port)
        self.expect(serving == "v2", f"after deploying v2, {self.url} serves {serving}")
        self.done(f"v2 serves; all {report.total} requests answered, none failed")

    # 6
    def deploy_broken(self) -> None:
        self.begin("Deploying a broken release (v3-broken) under live traffic")
        start_registry()  # up again if someone stopped it meanwhile
        watch, usual = BROKEN_VERIFY_SECONDS, VERIFY_SECONDS
        say(f"{INDENT}expected: it passes the health gate, takes traffic, breaks after 100")
        say(f"{INDENT}requests, and the watch of the public endpoint after the switch rolls")
        say(f"{INDENT}back to v2 by itself. The watch runs up to {watch} s here, not the")
        say(f"{INDENT}inventory's {usual} s, so a slow machine sees the break too; it stops")
        say(f"{INDENT}at the first failure.")
        sha = self.releases["v3-broken"]
        command = playbook(
            self.step,
            "deploy-broken",
            "deploy.yml",
            "-e",
            f"sha={sha}",
            "-e",
            f"app_verify_seconds={BROKEN_VERIFY_SECONDS}",
        )
        run, report = run_under_load(self.url, command)
        show_recap(run)
        message = error_message(run.output)
        self.expect(run.rc != 0, "deploying the broken release should have failed, but it passed")
        say(f"{INDENT}the playbook failed (exit {run.rc}), as it should; its final message:")
        wrap(message or "(none found; see the log)")
        self.expect(
            "Rolled back automatically" in run.output,
            "the playbook failed, but did not say it rolled back automatically",
            run,
        )
        serving = served_version(self.port)
        self.expect(serving == "v2", f"after the automatic rollback, {self.url} serves {serving}")
        if report.failed:
            last = max(o.end for o in report.failed)
            self.expect(
                all(o.ok and o.version == "v2" for o in sent_after(report.outcomes, last)),
                "requests kept failing (or were not served by v2) after the rollback",
            )
            recovery = secs(recovery_seconds(report.outcomes, "v2"))
            say(
                f"{INDENT}{len(report.failed)} requests failed once v3-broken broke; "
                f"{recovery} from its first failure to v2 serving again"
            )
        if report.versions["v3-broken"] == 0:
            say(f"{INDENT}note: v3-broken got no traffic this time (it failed before the switch)")
        self.done("v2 serves again, rolled back automatically; no failed request since")

    # 7
    def rollback_v1(self) -> None:
        self.begin("Rolling back to v1 by sha prefix under live traffic")
        prefix = self.releases["v1"][:8]
        say(f"{INDENT}v1's image is still on the host: no pull, the same health gate and switch")
        command = playbook(self.step, "rollback-v1", "rollback.yml", "-e", f"sha={prefix}")
        run, report = run_under_load(self.url, command)
        show_recap(run)
        self.expect(run.rc == 0, f"rolling back to v1 failed (exit {run.rc})", run)
        self.expect(
            not report.failed, f"{len(report.failed)} requests failed during the rollback", run
        )
        serving = served_version(self.port)
        self.expect(serving == "v1", f"after rolling back to v1, {self.url} serves {serving}")
        self.done(f"v1 serves again; all {report.total} requests answered, none failed")

    # 8
    def https(self) -> None:
        self.begin(f"Turning on HTTPS on {self.https_url} with a certificate from a local CA")
        ca = tls.make_ca("melk make demo local CA")
        leaf = tls.issue(ca, ["localhost"], ips=("127.0.0.1",))
        ca_file = TLS_DIR / "ca.pem"
        ca_file.parent.mkdir(parents=True, exist_ok=True)
        ca_file.write_text(ca.certificate)
        say(f"{INDENT}a CA made just now signed a certificate for 127.0.0.1 and localhost;")
        say(f"{INDENT}the inventory gets proxy_tls_certificate, proxy_tls_key (PEM text; in")
        say(f"{INDENT}production a vault file) and proxy_tls_port {self.tls_port}")
        self.group_vars = {
            **self.group_vars,
            "proxy_tls_port": self.tls_port,
            "proxy_tls_certificate": leaf.certificate,
            "proxy_tls_key": leaf.key,
        }
        server = servers.inspect(SERVER)
        servers.write_inventory(INVENTORY, [server], self.group_vars)
        INVENTORY.chmod(0o600)
        run = run_shown(playbook(self.step, "https", "provision.yml"))
        show_recap(run)
        self.expect(run.rc == 0, f"provision.yml with TLS failed (exit {run.rc})", run)
        try:
            answer = tls.https_get(self.tls_port, "/headers", "127.0.0.1", ca_file)
            redirect = tls.http_get(self.port, "/version", f"127.0.0.1:{self.port}")
        except OSError as err:
            raise DemoError(f"{self.https_url} does not answer as it should: {err}") from err
        headers = answer.json().get("headers")
        self.expect(
            answer.status == 200 and isinstance(headers, dict),
            f"{self.https_url}/headers answered {answer.status}",
        )
        assert isinstance(headers, dict)
        say(f"{INDENT}{self.https_url}/headers: {answer.status} over {answer.tls_version}; the app")
        say(f"{INDENT}sees X-Forwarded-Proto: {headers.get('X-Forwarded-Proto')}")
        self.expect(headers.get("X-Forwarded-Proto") == "https", "the app did not see https")
        location = redirect.headers.get("location", "")
        say(f"{INDENT}{self.url}/version: {redirect.status} -> {location}")
        self.expect(
            redirect.status == 301 and location == f"{self.https_url}/version",
            "plain HTTP does not redirect to HTTPS",
        )
        say(f"{INDENT}trust the local CA for one command with --cacert:")
        say(f"{INDENT}  curl --cacert {rel(ca_file)} {self.https_url}/version")
        self.done(f"HTTPS serves on {self.https_url}; plain HTTP redirects there")

    # 9
    def status(self) -> None:
        self.begin(f"Status of {SERVER}")
        run = run_shown(playbook(self.step, "status", "status.yml"))
        self.expect(run.rc == 0, f"status.yml failed (exit {run.rc})", run)
        shown = False
        for status, _host, result in host_results(run.output):
            msg = result.get("msg")
            if (
                status == "ok"
                and isinstance(msg, list)
                and any(str(x).startswith("current") for x in msg)
            ):
                for line in msg:
                    say(f"{INDENT}  {line}")
                shown = True
        self.expect(shown, f"status.yml printed no status (full output: {log_of(run)})")
        self.done(f"status read ({duration(run.seconds)})")

    # 10
    def epilogue(self) -> None:
        self.begin("Your turn: reach the app, deploy again, tear down")
        v2 = self.releases["v2"]
        inv = rel(INVENTORY)
        ca_file = rel(TLS_DIR / "ca.pem")
        say(f"{INDENT}The app answers on {self.https_url} ({self.url} redirects there):")
        say(f"{INDENT}  curl --cacert {ca_file} {self.https_url}/version")
        say(f"{INDENT}  curl -i {self.url}/version")
        say(f"{INDENT}Deploy again from this directory (the tools are in .venv/bin:")
        say(f"{INDENT}run `. .venv/bin/activate` first):")
        say(f"{INDENT}  ansible-playbook -i {inv} playbooks/deploy.yml -e sha={v2}")
        say(f"{INDENT}  ansible-playbook -i {inv} playbooks/rollback.yml")
        say(f"{INDENT}  ansible-playbook -i {inv} playbooks/status.yml")
        say(f"{INDENT}Tear the sandbox down (the cached base images stay):")
        say(f"{INDENT}  make demo-clean")

    def run(self) -> None:
        DEMO_DIR.mkdir(parents=True, exist_ok=True)
        for step in (
            self.prepare,
            self.start_server,
            self.provision,
            self.deploy_v1,
            self.deploy_v2,
            self.deploy_broken,
            self.rollback_v1,
            self.https,
            self.status,
            self.epilogue,
        ):
            step()


def main_demo() -> int:
    started = time.monotonic()
    say(f"make demo: the main job on a sandbox server, in {STEPS} steps")
    demo: Demo | None = None
    try:
        demo = Demo()
        demo.run()
    except (DemoError, TestbedError) as err:
        step = f" at step {demo.step}/{STEPS}" if demo and demo.step else ""
        say()
        say(f"make demo FAILED{step}: {err}")
        if demo and demo.sandbox_up:
            say(f"The sandbox {SERVER} is left as it is to look at; `make demo-clean` removes it.")
        return 1
    except KeyboardInterrupt:
        say()
        say("make demo: interrupted; `make demo-clean` removes the sandbox")
        return 130
    say()
    took = duration(time.monotonic() - started)
    say(f"make demo: all {STEPS} steps behaved as expected in {took}")
    return 0


def main_clean() -> int:
    """Remove the sandbox server and its engine's volume, stop the registry
    listeners the demo started; the cached base images and pushed releases stay."""
    servers.remove(SERVER)
    say(f"demo-clean: removed the sandbox server {SERVER} and its volume {SERVER}-docker")
    try:
        ours = {str(n): int(p) for n, p in json.loads(REGISTRY_MARK.read_text()).items()}
    except (OSError, ValueError):
        ours = {}
    running = listener_pids()
    stopped = 0
    for name, pid in ours.items():
        if running.get(name) != pid:
            continue
        if not registry.stop_listener(name, pid):
            continue
        say(f"demo-clean: stopped the registry listener the demo started ({name}, pid {pid})")
        stopped += 1
    if not stopped:
        say("demo-clean: no registry listener the demo started runs; the registry is left as it is")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    say(f"demo-clean: removed {rel(DEMO_DIR)}; cached base images kept")
    return 0


def main(argv: Sequence[str]) -> int:
    if not argv:
        return main_demo()
    if argv[0] == "clean":
        return main_clean()
    print(__doc__, file=sys.stderr if argv[0] not in {"-h", "--help"} else sys.stdout)
    return 0 if argv[0] in {"-h", "--help"} else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
