"""Entry point of the zipapp and of `python -m nimbus`."""

from __future__ import annotations

import sys


def main() -> None:
    from nimbus.cli.main import run

    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
