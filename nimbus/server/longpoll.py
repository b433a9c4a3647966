"""Long-poll wake-ups: agents waiting for tasks are woken when a task for their node is queued."""

from __future__ import annotations

import threading


class Waiters:
    """Per-node change counters under one condition variable, plus a cap on waiting polls."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = {}
        self._closed = False
        self.waiting = 0  # long-polls holding a server worker thread right now

    def close(self) -> None:
        """Release every waiting long-poll at once (server shutdown) and never wait again."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def version(self, node_id: str) -> int:
        with self._cond:
            return self._versions.get(node_id, 0)

    def notify(self, node_ids: list[str]) -> None:
        with self._cond:
            for node_id in node_ids:
                self._versions[node_id] = self._versions.get(node_id, 0) + 1
            self._cond.notify_all()

    def begin_wait(self, limit: int) -> bool:
        """Claim one of `limit` long-poll slots; False when all are taken."""
        with self._cond:
            if self.waiting >= limit:
                return False
            self.waiting += 1
            return True

    def end_wait(self) -> None:
        with self._cond:
            self.waiting -= 1

    def wait(self, node_id: str, seen: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or self._versions.get(node_id, 0) != seen, timeout)
