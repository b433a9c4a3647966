"""Fetches: what an agent sends back for a read (log lines), held in memory for the asker.

A read that needs an agent never waits in a worker: `POST …/logs` creates a fetch and
queues the task, the task's result hook appends the lines here, and `GET …/logs/{id}?cursor=N`
returns what arrived after N at once. SECURITY: log lines may hold secrets (a container
printing its password), so they live only here — never in the task store, a log or the
audit — and a fetch is readable only by the principal that created it.
Bounded everywhere: live fetches, buffered lines and bytes, the bytes of one answer; a fetch
nobody read for IDLE_SEC is dropped.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nimbus.errors import NotFound, Throttled

MAX_FETCHES = 256
MAX_PER_OWNER = 16
MAX_LINES = 20000
MAX_BYTES = 8 * 1024 * 1024
MAX_ANSWER = 2 * 1024 * 1024
IDLE_SEC = 30.0


@dataclass
class Fetch:
    id: str
    owner: str
    kind: str  # "stack" or "node": which endpoint may read it
    target: str  # the stack name or node id
    follow: bool = False
    lines: list[Any] = field(default_factory=list)
    base: int = 0  # the cursor of lines[0] (older lines were dropped)
    size: int = 0
    done: bool = False
    error: str = ""
    truncated: bool = False  # some lines were left out (an answer or round over its cap)
    read_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # the owner's own bookkeeping


class Fetches:
    """Every live fetch of a control plane, behind one lock."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Fetch] = {}
        self._clock = monotonic

    def create(self, owner: str, kind: str, target: str, follow: bool = False) -> Fetch:
        with self._lock:
            self._expire()
            if len(self._items) >= MAX_FETCHES or sum(
                    f.owner == owner for f in self._items.values()) >= MAX_PER_OWNER:
                raise Throttled("too many log reads are open; close one or retry shortly", 5)
            f = Fetch(id="fetch-" + secrets.token_hex(12), owner=owner, kind=kind,
                      target=target, follow=follow, read_at=self._clock())
            self._items[f.id] = f
            return f

    def get(self, fetch_id: str) -> Fetch | None:
        with self._lock:
            return self._items.get(fetch_id)

    def append(self, fetch: Fetch, lines: list[Any], truncated: bool = False) -> None:
        with self._lock:
            fetch.lines += lines
            fetch.size += sum(len(json.dumps(x)) for x in lines)
            fetch.truncated = fetch.truncated or truncated
            while fetch.lines and (len(fetch.lines) > MAX_LINES or fetch.size > MAX_BYTES):
                fetch.size -= len(json.dumps(fetch.lines.pop(0)))
                fetch.base += 1

    def finish(self, fetch: Fetch, error: str = "") -> None:
        with self._lock:
            fetch.done, fetch.error = True, error

    def wanted(self, fetch: Fetch) -> bool:
        """A followed fetch is worth another round while its reader keeps reading."""
        with self._lock:
            return (fetch.id in self._items and not fetch.done
                    and self._clock() - fetch.read_at < IDLE_SEC / 2)

    def read(self, fetch_id: str, owner: str, kind: str, target: str,
             cursor: int) -> dict[str, Any]:
        """{id, lines, cursor, done, error, truncated, dropped} after `cursor`, capped."""
        with self._lock:
            f = self._items.get(fetch_id)
            if f is None or f.owner != owner or f.kind != kind or f.target != target:
                raise NotFound("no such log read (they expire after 30 s without a reader)")
            f.read_at = self._clock()
            start = max(cursor, f.base) - f.base
            out, used = [], 0
            for line in f.lines[start:]:
                used += len(json.dumps(line))
                if used > MAX_ANSWER and out:
                    break
                out.append(line)
            end = f.base + start + len(out)
            done = f.done and end >= f.base + len(f.lines)
            if done:
                del self._items[f.id]  # all said: it no longer counts against the caps
            return {"id": f.id, "lines": out, "cursor": end, "done": done, "error": f.error,
                    "truncated": f.truncated, "dropped": max(0, f.base - cursor)}

    def close(self, fetch_id: str, owner: str) -> None:
        with self._lock:
            f = self._items.get(fetch_id)
            if f is not None and f.owner == owner:
                f.done = True
                del self._items[fetch_id]

    def _expire(self) -> None:
        now = self._clock()
        for fid in [k for k, f in self._items.items() if now - f.read_at > IDLE_SEC]:
            del self._items[fid]
