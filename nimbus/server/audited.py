"""Store transactions whose audit records are written before the commit.

A record written after a commit could fail (a full disk) and turn a write that happened into
an error: the client retries and gets 409, or never sees a new key's secret. Written first, a
failing audit log fails the request before anything changed. If the commit then fails, a
`commit.failed` record (best effort) says the events before it did not take effect.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from nimbus.server.state import State

log = logging.getLogger("nimbus.audit")
Note = Callable[..., None]


@contextlib.contextmanager
def transaction(state: State, *names: str) -> Iterator[tuple[dict[str, dict[str, Any]], Note]]:
    """`with audited.transaction(state, "users") as (tx, note): ...; note("user.created", ...)`"""
    pending: list[tuple[str, dict[str, Any]]] = []
    written: list[str] = []

    def note(event: str, **fields: Any) -> None:
        pending.append((event, fields))

    try:
        with state.store.transaction(*names) as tx:
            yield tx, note
            now = state.now()
            for event, fields in pending:
                state.audit.record(event, now, **fields)
                written.append(event)
    except BaseException as exc:
        if written:
            with contextlib.suppress(Exception):
                state.audit.record("commit.failed", state.now(), events=written,
                                   error=type(exc).__name__)
            log.error("a change was audited but not committed: %s (%s)", ", ".join(written),
                      exc)
        raise
