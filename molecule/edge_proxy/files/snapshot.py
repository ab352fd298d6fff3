"""What a case of side_effect.yml looks at on the test server, as one JSON object:
the switch file (text, mode, inode, mtime), the kernel's rule (the app's nftables
chain), nginx's master and worker pids and, with --fetch, the page the proxy
serves. With --address-of, the address of a release container once it answers.
One command per look instead of several modules.

Runs with the server's python3 (copied there by prepare.yml).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import urllib.request

CHAIN = ["nft", "list", "chain", "ip", "edge_proxy", "app-melk-ai"]  # the app's chain


def fetch(url: str, marker: str, seconds: float) -> str:
    """The page at url; retried for up to seconds until it holds marker."""
    if not url.startswith("http://"):
        raise SystemExit(f"not an http URL: {url}")
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http only
                body = str(response.read().decode())
        except OSError as err:  # HTTPError and URLError too
            body = f"no answer: {err}"
        if marker in body or time.monotonic() >= deadline:
            return body
        time.sleep(0.2)


def output(argv: list[str]) -> str:
    """A command's stdout, or its error as text (a missing chain is a finding)."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else f"rc={result.returncode}: {result.stderr}"


def address_of(container: str, seconds: float) -> str:
    """The container's address on the bridge, once its port 8000 answers."""
    fmt = "{{.NetworkSettings.IPAddress}}"
    deadline = time.monotonic() + seconds
    while True:
        ip = output(["docker", "inspect", "--format", fmt, container]).strip()
        answers = bool(ip) and not ip.startswith("rc=")
        if answers and "no answer" not in fetch(f"http://{ip}:8000/", "", 0):
            return ip
        if time.monotonic() >= deadline:
            raise SystemExit(f"{container} does not answer on port 8000")
        time.sleep(0.5)


def look(upstream: str, pid_file: str) -> dict[str, object]:
    """The switch file, the kernel's rule and nginx's processes as they are now."""
    info = os.stat(upstream)
    with open(upstream, encoding="utf-8") as handle:
        text = handle.read()
    with open(pid_file, encoding="utf-8") as handle:
        pid = handle.read().strip()
    workers = output(["pgrep", "-P", pid]).split()
    return {
        "upstream": text,
        "mode": f"{info.st_mode & 0o7777:04o}",
        "inode": info.st_ino,
        "mtime_ns": info.st_mtime_ns,
        "rule": output(CHAIN),
        "nginx_pid": pid,
        "nginx_workers": sorted(workers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("upstream", nargs="?", default="/etc/nginx/edge-proxy/melk-ai.upstream")
    parser.add_argument("--pid-file", default="/run/nginx.pid")
    parser.add_argument("--fetch", metavar="URL")
    parser.add_argument("--marker", default="")
    parser.add_argument("--seconds", type=float, default=0)
    parser.add_argument("--address-of", metavar="CONTAINER")
    args = parser.parse_args()
    if args.address_of:
        print(address_of(args.address_of, args.seconds))
        return
    served = fetch(args.fetch, args.marker, args.seconds) if args.fetch else None
    print(json.dumps({**look(args.upstream, args.pid_file), "served": served}))


if __name__ == "__main__":
    main()
