"""``python -m keel.deploy serve``: the container's entry point (see keel.deploy._boot)."""

import sys

from keel.deploy._boot import run

if __name__ == "__main__":
    sys.exit(run())
