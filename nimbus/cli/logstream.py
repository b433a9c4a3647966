"""Reading a log through the API: open a fetch, poll it with a cursor, print as lines come.

Shared by `service logs` and `node logs`. The server never holds a request open for the
agent (issue 23): `POST …/logs` opens the read, `GET …/logs/{id}?cursor=N` answers at once
with what arrived after N; `--follow` keeps polling until Ctrl-C, which closes the read.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from nimbus.errors import Conflict, NimbusError

POLL_SEC = 0.3
FIRST_ANSWER_SEC = 60.0  # without --follow: how long the manager may take to answer


def read(client: Any, path: str, body: dict[str, Any], follow: bool,
         show: Callable[[Any], None], closable: bool = True) -> int:
    """Open the read at `path`, print every line with `show`; the number of lines printed."""
    opened = client.request("POST", path, body)
    where = f"{path}/{opened['id']}"
    printed, cursor, truncated = 0, 0, False
    deadline = time.monotonic() + FIRST_ANSWER_SEC
    try:
        while True:
            out = client.request("GET", f"{where}?cursor={cursor}")
            if out.get("dropped"):
                _note(f"{out['dropped']} lines were dropped (the reader fell behind)")
            for line in out["lines"]:
                show(line)
                printed += 1
            sys.stdout.flush()
            cursor = out["cursor"]
            truncated = truncated or bool(out.get("truncated"))
            if out["done"]:
                if out.get("error"):
                    raise Conflict(out["error"])
                break
            if not follow and time.monotonic() > deadline:
                raise NimbusError(f"no answer from the agent within {FIRST_ANSWER_SEC:.0f} s "
                                  "(is it running?)")
            if not out["lines"]:
                time.sleep(POLL_SEC)
    except KeyboardInterrupt:
        pass  # --follow ends with Ctrl-C, like `docker service logs -f`
    finally:
        if closable:
            _close(client, where)
    if truncated:
        _note("some lines were left out: a single answer is capped at 64 KiB "
              "(narrow it with --service, --tail or --since)")
    return printed


def _close(client: Any, where: str) -> None:
    with contextlib.suppress(NimbusError, KeyboardInterrupt):  # or it expires in 30 s
        client.request("DELETE", where)


def _note(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"note: {text}\n")


def stack_line(timestamps: bool, fmt: str) -> Callable[[dict[str, Any]], None]:
    """How `service logs` prints one line: `app.1@n1 | text`, like docker service logs."""
    def show(line: dict[str, Any]) -> None:
        if fmt == "json":
            sys.stdout.write(json.dumps(line, sort_keys=True) + "\n")
            return
        prefix = f"{line['time']} " if timestamps else ""
        text = f"{prefix}{line['service']}.{line['replica']}@{line['node']} | {line['text']}\n"
        if line.get("stream") == "stderr":  # like docker: the container's stderr to ours
            sys.stdout.flush()
            sys.stderr.write(text)
            sys.stderr.flush()
        else:
            sys.stdout.write(text)
    return show


def plain_line(fmt: str) -> Callable[[str], None]:
    def show(line: str) -> None:
        sys.stdout.write((json.dumps(line) if fmt == "json" else line) + "\n")
    return show
