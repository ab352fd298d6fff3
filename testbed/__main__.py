"""Command line: python -m testbed COMMAND.

engine           make sure a Docker engine answers (installs/starts one as root)
images [NAME..]  build the cached base images (server, server-bookworm, app-base,
                 server-provisioned)
refs             print the image references as JSON (for Molecule and tests)
env              print shell exports of the image references (eval "$(... env)")
prepare          engine + every image: all a test run needs before it starts
app-image VERSION [MODE]
                 build a sample app release as melk-testbed/melk-ai:SHA (not
                 pushed); print its sha
load-image CONTAINER REF
                 copy an image from this engine into a test server's engine
"""

from __future__ import annotations

import json
import sys

from testbed import TestbedError, app, engine, images, servers


def image_refs() -> dict[str, str]:
    refs = {name: recipe.ref for name, recipe in images.RECIPES.items()}
    refs["busybox"] = images.BUSYBOX_REF
    return refs


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command, args = argv[0], argv[1:]
    try:
        if command == "engine":
            engine.ensure_engine()
        elif command == "images":
            engine.ensure_engine()
            images.build_all(args or None)
        elif command == "prepare":
            engine.ensure_engine()
            images.build_all()
            servers.ssh_key()  # here, not by the parallel lanes of make test at once
        elif command == "refs":
            print(json.dumps(image_refs(), indent=2))
        elif command == "app-image":
            print(app.build_release(args[0], args[1] if len(args) > 1 else "ok", push=False))
        elif command == "load-image":
            servers.load_image(args[0], args[1])
        elif command == "env":
            for name, ref in image_refs().items():
                var = "TESTBED_" + name.upper().replace("-", "_") + "_IMAGE"
                print(f"export {var}={ref}")
        else:
            print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
            return 2
    except TestbedError as err:
        print(f"testbed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
