"""The four modules run by Ansible itself on this machine (connection local): AnsiballZ must
ship module_utils/ with each of them (ansible.cfg's module_utils), which pytest's imports
cannot show. One playbook, about 10 s: the lock taken with a read, a checksum and the image
tags; an upstream switched; a container started, probed healthy with its state checked,
removed; the lock released with the record written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BUSYBOX = "melk-testbed/busybox:1"


class Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/health"
    httpd.shutdown()


@pytest.fixture
def sleeper() -> Iterator[str]:
    """An image whose container keeps running (busybox's own command exits at once)."""
    ref = f"h1-test/sleeper:{uuid.uuid4().hex[:8]}"
    built = subprocess.run(
        ["docker", "build", "--quiet", "--tag", ref, "-"],
        input=f'FROM {BUSYBOX}\nCMD ["sleep", "60"]\n',
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    yield ref
    subprocess.run(["docker", "image", "rm", "--force", ref], capture_output=True, check=False)


def playbook(directory: Path, url: str, image: str, container: str) -> list[dict[str, Any]]:
    upstream = str(directory / "app.upstream")
    lock = {"path": str(directory / "deploy.lock")}
    return [
        {
            "name": "The project's modules under Ansible",
            "hosts": "all",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Take the lock",
                    "deploy_lock": {
                        **lock,
                        "owner": "h1@test",
                        "run_id": "run-1",
                        "read": [upstream],
                        "checksum": [upstream],
                        "image_repository": image.split(":")[0],
                    },
                },
                {
                    "name": "Switch the upstream",
                    "proxy_upstream": {
                        "path": upstream,
                        "content": "server 127.0.0.1:18001;\n",
                        "validate": "grep -q server %s",
                        "test_command": ["true"],
                        "reload_command": ["true"],
                    },
                },
                {
                    "name": "Start the container",
                    "app_container": {"name": container, "image": image, "stop_timeout": 1},
                },
                {
                    "name": "Probe it",
                    "health_probe": {
                        "url": url,
                        "mode": "ready",
                        "seconds": 5,
                        "watch_seconds": 0.3,
                        "interval": 0.1,
                        "container": container,
                    },
                },
                {
                    "name": "Remove the container",
                    "app_container": {"name": container, "state": "absent", "stop_timeout": 1},
                },
                {
                    "name": "Release the lock, writing the record",
                    "deploy_lock": {
                        **lock,
                        "state": "release",
                        "run_id": "run-1",
                        "write": {str(directory / "releases.json"): '{"version": 1}\n'},
                    },
                },
            ],
        }
    ]


@pytest.mark.docker
def test_the_modules_run_under_ansible(tmp_path: Path, server: str, sleeper: str) -> None:
    container = f"h1-test-{uuid.uuid4().hex[:8]}"
    book = tmp_path / "modules.yml"
    book.write_text(yaml.safe_dump(playbook(tmp_path, server, sleeper, container)))
    interpreter = shutil.which("python3", path="/usr/bin") or sys.executable
    # The roles' modules are found beside the role in a play that uses it; this play has
    # no role, so their directories are named. module_utils comes from ansible.cfg.
    libraries = [ROOT / "library", *sorted(ROOT.glob("roles/*/library"))]
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_LIBRARY": ":".join(str(path) for path in libraries),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
    }
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,"]
    argv += ["-c", "local", "-e", f"ansible_python_interpreter={interpreter}", str(book)]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=False,
            timeout=120,
        )
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tasks = json.loads(done.stdout)["plays"][0]["tasks"]
    results = {task["task"]["name"]: task["hosts"]["localhost"] for task in tasks}
    taken = results["Take the lock"]
    # (the json callback puts the module's name in "action")
    assert (taken["changed"], taken["lock"]["owner"]) == (True, "h1@test")
    assert taken["files"] == {str(tmp_path / "app.upstream"): ""}
    assert taken["checksums"] == {str(tmp_path / "app.upstream"): ""}
    assert sleeper.split(":")[1] in taken["image_tags"]
    assert results["Switch the upstream"]["reloaded"] is True
    assert (tmp_path / "app.upstream").read_text() == "server 127.0.0.1:18001;\n"
    assert len(results["Start the container"]["container_id"]) == 64
    probe = results["Probe it"]
    assert (probe["healthy"], probe["phase"], probe["state"]["running"]) == (True, "watch", True)
    assert results["Remove the container"]["changed"] is True
    released = results["Release the lock, writing the record"]
    assert released["written"] == [str(tmp_path / "releases.json")]
    assert (tmp_path / "releases.json").read_text() == '{"version": 1}\n'
    assert not (tmp_path / "deploy.lock").exists()
    gone = subprocess.run(["docker", "inspect", container], capture_output=True, check=False)
    assert gone.returncode != 0
