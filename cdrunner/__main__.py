"""python -m cdrunner deploy|rollback ... (see cdrunner.cli)."""

from __future__ import annotations

import sys

from cdrunner.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
