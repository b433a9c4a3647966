"""Durations on the monotonic clock, for timestamps that are stored as wall-clock time.

The store keeps wall-clock times (operators read them, they survive a restart), but a
duration measured as `time.time() - stored` follows every clock step: stepped back an hour,
a dead node looked ready for an hour and a delivered task was not redelivered. `Stamps`
remembers the monotonic time of each event this process saw; an event from before this
start is aged by the wall clock once, at start-up, and on the monotonic clock from then on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class Stamps:
    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._wall0, self._mono0 = wall(), monotonic()
        self._marks: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def mark(self, key: Hashable) -> None:
        """The event `key` happens now."""
        with self._lock:
            self._marks[key] = self.monotonic()

    def claim(self, key: Hashable, interval: float) -> bool:
        """Mark `key` now unless it was marked less than `interval` seconds ago (atomic, so
        parallel callers cannot both pass); True when marked."""
        with self._lock:
            now, last = self.monotonic(), self._marks.get(key)
            if last is not None and now - last < interval:
                return False
            self._marks[key] = now
            return True

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._marks.pop(key, None)

    def age(self, key: Hashable, wall_stamp: float) -> float:
        """Seconds since the event `key`; wall_stamp (its stored time) if this process did
        not see it."""
        mono = self._marks.get(key)
        if mono is not None:
            return self.monotonic() - mono
        return (self.monotonic() - self._mono0) + (self._wall0 - wall_stamp)
