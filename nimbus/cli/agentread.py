"""Reads the control plane answers with an agent's help, without a request waiting for it.

The server never holds a request open for an agent (issue 23), so the CLI does the waiting:
logs (`service logs`, `node logs`): `POST …/logs` opens a read, `GET …/logs/{id}?cursor=N`
answers at once with what arrived after N, `--follow` keeps polling until Ctrl-C, which
closes the read; describes (`fresh`): asked again while the answer says a refresh from the
manager is on its way.
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
FRESH_SEC = 8.0  # how long a describe waits for the manager's refresh


def fresh(client: Any, path: str) -> dict[str, Any]:
    """GET path, again every POLL_SEC while it says `refreshing` (up to FRESH_SEC); when
    the manager did not answer in time, a note says how old the answer is."""
    deadline = time.monotonic() + FRESH_SEC
    data = client.request("GET", path)
    while data.get("refreshing") and time.monotonic() < deadline:
        time.sleep(POLL_SEC)
        data = client.request("GET", path)
    if data.get("refreshing"):
        age = data.get("age")
        _note("the swarm manager has not answered yet: this is what it reported "
              + (f"{age:.0f} s ago" if isinstance(age, (int, float)) else "before (never)"))
    return data


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
