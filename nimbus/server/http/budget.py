"""What the connection layer lets clients hold: connections and buffered bytes, per source
and in total. Thread-safe: the gate admits and charges, whichever thread closes releases.

A source is a client IP address (an IPv6 client counts as its /64, as in login throttling).
Buffered bytes are what the gate keeps for a connection: an unfinished request's input, and a
response the client has not read yet. When the whole server holds `max_connections`, the
next connection pushes out the oldest waiting one (handshaking, idle, unfinished, unread) of
the source that holds the most, so a flood from some addresses never locks out the others.
See docs/decisions.md ("The connection layer").
"""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    request_timeout: float = 10.0
    idle_timeout: float = 65.0
    per_source: int = 512                  # open connections per source
    max_connections: int = 20000           # open connections in total
    buffered_per_source: int = 16 * MIB    # unfinished input + unread output, per source
    buffered_total: int = 256 * MIB        # the same, for the whole server

    @classmethod
    def from_config(cls, config: Any) -> Limits:
        return cls(float(config.request_timeout_sec), float(config.idle_timeout_sec),
                   int(config.max_connections_per_source), int(config.max_connections),
                   int(config.max_buffered_per_source_mib) * MIB,
                   int(config.max_buffered_total_mib) * MIB)


class Ledger:
    """Connections by source (oldest first) and the bytes charged to each source."""

    def __init__(self, limits: Limits, busy: str) -> None:
        self.limits = limits
        self._busy = busy  # the phase of a connection a worker owns: never pushed out
        self._lock = threading.Lock()
        self._conns: dict[str, dict[Any, None]] = {}
        self._bytes: dict[str, int] = {}
        self.total_connections = 0
        self.total_bytes = 0

    def admit(self, source: str) -> bool:
        """Room for one more connection from `source` (the per-source cap)?"""
        with self._lock:
            return len(self._conns.get(source, ())) < self.limits.per_source

    def full(self) -> bool:
        return self.total_connections >= self.limits.max_connections

    def track(self, conn: Any) -> None:
        with self._lock:
            self._conns.setdefault(conn.source, {})[conn] = None
            self.total_connections += 1

    def release(self, conn: Any) -> None:
        with self._lock:
            mine = self._conns.get(conn.source)
            if mine is None or conn not in mine:
                return  # never tracked, or released already
            del mine[conn]
            self.total_connections -= 1
            if not mine:
                del self._conns[conn.source]
            self._move(conn, 0)

    def charge(self, conn: Any, nbytes: int) -> bool:
        """Record that `conn` now holds `nbytes`; False when that puts its source or the
        server over budget (the caller then refuses or drops it; release refunds)."""
        if nbytes == conn.charged:
            return True
        with self._lock:
            self._move(conn, nbytes)
            return (self._bytes.get(conn.source, 0) <= self.limits.buffered_per_source
                    and self.total_bytes <= self.limits.buffered_total)

    def _move(self, conn: Any, nbytes: int) -> None:
        delta = nbytes - conn.charged
        if not delta:
            return
        conn.charged = nbytes
        held = self._bytes.get(conn.source, 0) + delta
        if held > 0:
            self._bytes[conn.source] = held
        else:
            self._bytes.pop(conn.source, None)
        self.total_bytes += delta

    def victim(self) -> Any | None:
        """The oldest connection no worker owns, of the source holding the most."""
        with self._lock:
            for conns in heapq.nlargest(8, self._conns.values(), key=len):
                for conn in conns:
                    if conn.phase != self._busy:
                        return conn
        return None
