"""Entry point of the zipapp and of `python -m nimbus`."""

from __future__ import annotations

import os
import sys

# Commands that run until stopped leave the normal way (atexit, logging shutdown); their
# exit time does not matter.
LONG_RUNNING = ("serve", "agent")


def main() -> None:
    from nimbus.cli.main import run

    obj: dict[str, object] = {}
    code = run(sys.argv[1:], obj)
    if obj.get("command") in LONG_RUNNING:
        sys.exit(code)
    exit_now(code)


def exit_now(code: int) -> None:
    """Flush and end the process without tearing the interpreter down.

    After a command has printed, Python's finalization (every module torn down, a full GC,
    then OpenSSL's own atexit cleanup) took 11-16 ms: a third of `nimbus node list`. A CLI
    command has nothing left for it to do: its files are written and fsynced with `with`
    blocks, the store is never opened by the CLI, and output is flushed here.
    """
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib's import would cost more than the flush
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head -1`): nothing more to say
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
