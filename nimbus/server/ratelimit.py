"""Sliding-window counters for failed logins, per user and per source address."""

from __future__ import annotations

import threading
from collections import deque

from nimbus.errors import Throttled


class Window:
    """At most `limit` events per `period` seconds for each key."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _trim(self, key: str, now: float) -> deque[float]:
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.period:
            events.popleft()
        return events

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until key may try again; 0 when it is not throttled."""
        with self._lock:
            events = self._trim(key, now)
            if len(events) < self.limit:
                if not events:
                    self._events.pop(key, None)
                return 0.0
            return events[0] + self.period - now

    def add(self, key: str, now: float) -> None:
        with self._lock:
            self._trim(key, now).append(now)
            if len(self._events) > 100_000:  # bound memory under a spray of names
                for k in [k for k, v in self._events.items() if not v][:50_000]:
                    del self._events[k]

    def clear(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)


class LoginThrottle:
    """5 failures per user in 15 min, 20 per source in 5 min; the next try is answered 429."""

    def __init__(self, per_user: int = 5, user_period: float = 900,
                 per_source: int = 20, source_period: float = 300) -> None:
        self.users = Window(per_user, user_period)
        self.sources = Window(per_source, source_period)

    def check(self, username: str, source: str, now: float) -> None:
        wait = max(self.users.retry_after(username.lower(), now),
                   self.sources.retry_after(source, now))
        if wait > 0:
            raise Throttled("too many failed logins; try again later", int(wait) + 1)

    def failed(self, username: str, source: str, now: float) -> None:
        self.users.add(username.lower(), now)
        self.sources.add(source, now)

    def succeeded(self, username: str) -> None:
        self.users.clear(username.lower())
