"""Hot node data (heartbeats, last seen) in memory, persisted in batches, never per heartbeat."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from nimbus.store import Store

log = logging.getLogger("nimbus.runtime")


class Runtime:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] = {
            k: dict(v) for k, v in store.read("runtime").items()}
        self._dirty = False
        # The records changed since the last flush, and what that flush wrote: a flush copies
        # and encodes only those (200 heartbeating nodes among 10,000, not the 10,000).
        self._changed: set[str] = set()
        self._flushed: dict[str, dict[str, Any]] | None = None
        self._flushing = threading.Lock()  # one flush at a time (the flusher, a shutdown)
        # Joined nodes whose first mTLS request arrived: the copy of their certificate kept
        # for a lost join answer can go. Dropped from the store in the next flush, in one
        # write for all of them, so a burst of first heartbeats never rewrites nodes.json
        # once per node.
        self._answered: set[str] = set()
        # Bumped on every change, so derived views (the node listing) know when to rebuild.
        self.version = 0

    def get(self, node_id: str) -> dict[str, Any]:
        with self._lock:
            return self._data.get(node_id, {})

    def update(self, node_id: str, values: dict[str, Any]) -> None:
        with self._lock:
            self._data.setdefault(node_id, {}).update(values)
            self._dirty = True
            self._changed.add(node_id)
            self.version += 1

    def note_answered(self, node_id: str) -> None:
        with self._lock:
            self._answered.add(node_id)

    def answered(self, node_id: str) -> bool:
        with self._lock:
            return node_id in self._answered

    def forget(self, node_id: str) -> None:
        with self._lock:
            self._data.pop(node_id, None)
            self._dirty = True
            self._changed.add(node_id)
            self.version += 1

    def flush(self) -> bool:
        """Write the whole runtime collection once if anything changed since the last flush."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> bool:
        self._drop_kept_certificates()
        with self._lock:
            if not self._dirty:
                return False
            changed, self._changed = self._changed, set()
            if self._flushed is None:
                snapshot = {k: dict(v) for k, v in self._data.items()}
            else:
                snapshot = dict(self._flushed)  # records are never changed in place
                for key in changed:
                    if key in self._data:
                        snapshot[key] = dict(self._data[key])
                    else:
                        snapshot.pop(key, None)
            self._dirty = False
        try:
            self.store.replace("runtime", snapshot,
                               changed if self._flushed is not None else None)
        except Exception:
            with self._lock:
                self._dirty = True
                self._changed |= changed
            raise
        self._flushed = snapshot
        return True

    def _drop_kept_certificates(self) -> None:
        with self._lock:
            answered = set(self._answered)
        if not answered:
            return
        with self.store.transaction("nodes") as tx:
            for node_id in answered:
                join = (tx["nodes"].get(node_id) or {}).get("join") or {}
                if "cert_pem" in join:
                    tx["nodes"][node_id]["join"] = {
                        k: v for k, v in join.items() if k != "cert_pem"}
        with self._lock:
            self._answered -= answered

    def run_flusher(self, interval: float, stop: threading.Event) -> None:
        while not stop.wait(interval):
            try:
                self.flush()
            except Exception:
                log.exception("persisting heartbeat data failed")
        self.flush()

    def start_flusher(self, interval: float = 5.0) -> Callable[[], None]:
        """Persist in the background every `interval` seconds; returns the stop function,
        which flushes a last time."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run_flusher, args=(interval, stop),
                                  name="runtime-flush", daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join(timeout=10)

        return halt
