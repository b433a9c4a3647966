"""Failed-login throttling per (user, source) and per source, checked and counted atomically.

SECURITY: failures are never counted per user alone, so an attacker at one address cannot
lock the real user out at another; an attempt is counted when it starts (and refunded
when it succeeds), so N parallel attempts are checked against the limit, not N times
the limit. Windows run on the monotonic clock: a wall-clock step can neither lift a
throttle nor make a Retry-After of a day.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from nimbus.errors import Throttled

MAX_KEYS = 100_000  # bound memory under a spray of names or addresses


def username_key(username: str) -> str:
    """Usernames are unique case-insensitively; login and throttling both use this."""
    return username.lower()


def source_key(source: str) -> str:
    """An IPv6 client holds a whole /64, so it counts as one source."""
    try:
        addr = ipaddress.ip_address(source)
    except ValueError:
        return source
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


class Window:
    """At most `limit` events per `period` seconds for each key (caller holds the lock)."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._events: dict[object, deque[float]] = {}

    def wait(self, key: object, now: float) -> float:
        """Seconds until key may try again; 0 when it is not throttled."""
        events = self._events.get(key)
        if events is None:
            return 0.0
        while events and events[0] <= now - self.period:
            events.popleft()
        if not events:
            del self._events[key]
            return 0.0
        return events[0] + self.period - now if len(events) >= self.limit else 0.0

    def add(self, key: object, now: float) -> None:
        if key not in self._events and len(self._events) >= MAX_KEYS:
            for k in [k for k, v in self._events.items() if not v or v[-1] <= now - self.period]:
                del self._events[k]
        self._events.setdefault(key, deque()).append(now)

    def remove(self, key: object, at: float) -> None:
        events = self._events.get(key)
        if events is not None and at in events:
            events.remove(at)

    def clear(self, key: object) -> None:
        self._events.pop(key, None)


@dataclass(frozen=True)
class Attempt:
    pair: tuple[str, str]
    source: str
    at: float


class LoginThrottle:
    """5 failures per (user, source) in 15 min, 20 per source in 5 min; then 429."""

    def __init__(self, per_user: int = 5, user_period: float = 900,
                 per_source: int = 20, source_period: float = 300,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pairs = Window(per_user, user_period)
        self.sources = Window(per_source, source_period)
        self.clock = clock
        self._lock = threading.Lock()

    def attempt(self, username: str, source: str) -> Attempt:
        """Count one attempt now, or raise Throttled; call succeeded() if it was right."""
        src = source_key(source)
        pair = (username_key(username), src)
        with self._lock:
            now = self.clock()
            wait = max(self.pairs.wait(pair, now), self.sources.wait(src, now))
            if wait > 0:
                raise Throttled("too many failed logins; try again later", math.ceil(wait))
            self.pairs.add(pair, now)
            self.sources.add(src, now)
        return Attempt(pair, src, now)

    def succeeded(self, attempt: Attempt) -> None:
        """The right password: forget this user's failures from there, refund the source."""
        with self._lock:
            self.pairs.clear(attempt.pair)
            self.sources.remove(attempt.source, attempt.at)
