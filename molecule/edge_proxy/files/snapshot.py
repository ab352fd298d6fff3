"""What a switch case of side_effect.yml looks at on the test server, as one JSON
object: the upstream file (text, mode, inode, mtime), nginx's master pid and, with
--fetch, the page the proxy serves. One command per look instead of several modules.

Runs with the server's python3 (copied there by prepare.yml).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request


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


def look(upstream: str, pid_file: str) -> dict[str, object]:
    """The upstream file and nginx's master pid as they are now."""
    info = os.stat(upstream)
    with open(upstream, encoding="utf-8") as handle:
        text = handle.read()
    with open(pid_file, encoding="utf-8") as handle:
        pid = handle.read().strip()
    return {
        "upstream": text,
        "mode": f"{info.st_mode & 0o7777:04o}",
        "inode": info.st_ino,
        "mtime_ns": info.st_mtime_ns,
        "nginx_pid": pid,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("upstream")
    parser.add_argument("--pid-file", default="/run/nginx.pid")
    parser.add_argument("--fetch", metavar="URL")
    parser.add_argument("--marker", default="")
    parser.add_argument("--seconds", type=float, default=0)
    args = parser.parse_args()
    # the page first: after a reload, the files are read once the proxy serves
    served = fetch(args.fetch, args.marker, args.seconds) if args.fetch else None
    print(json.dumps({**look(args.upstream, args.pid_file), "served": served}))


if __name__ == "__main__":
    main()
