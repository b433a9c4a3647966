"""Replay protection for HMAC-signed requests that survives restarts, kill -9 and reboots.

A nonce must be refused while its request's timestamp is inside the skew window. In
memory that is a set; across a restart it is a journal: every accepted (key, nonce)
digest is appended to `replay/nonces.N` with one write(2) and no fsync. A killed or
restarted process loses nothing (the page cache holds the bytes), and the hot path pays
a single small syscall instead of an fsync. Only a crash of the whole machine can drop
the unsynced tail, so after a reboot (a new kernel boot ID) the server also refuses
every request signed before it started: `not_before`. That costs a client whose clock
is behind the server's by s seconds up to s seconds of 401s after a reboot; see
docs/security.md.

Journal files rotate every ttl + skew seconds and two generations are kept: an entry
expires at most ttl + skew after it was written, so a dropped file holds only nonces
whose window has closed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from nimbus.store.files import ensure_private_dir, write_private

log = logging.getLogger("nimbus.replay")
RECORD = struct.Struct("<16sd")  # digest, wall-clock expiry
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return "unknown"


def digest(key: str, nonce: str) -> bytes:
    return hashlib.blake2b(f"{key}\n{nonce}".encode(), digest_size=16).digest()


class NonceCache:
    """Nonces seen per key while their timestamp is inside the skew window: a replay.

    An entry is needed only until its request's timestamp leaves the window (after that
    the skew check refuses the replay anyway). Its lifetime is worked out once as a
    monotonic deadline, so a wall-clock step neither flushes the cache nor makes it keep
    entries for hours. Lifetimes are clamped to [0, ttl + skew], so pruning oldest-first
    lags by at most that much. Keys are 128-bit digests of (access key, nonce).
    """

    def __init__(self, ttl: float, max_ahead: float, journal_dir: Path | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 boot: Callable[[], str] = boot_id) -> None:
        self.ttl = ttl
        self.max_ahead = max_ahead  # how far in the future a timestamp may be (the skew)
        self.monotonic = monotonic
        self._seen: dict[bytes, float] = {}
        self._order: deque[tuple[float, bytes]] = deque()
        self._lock = threading.Lock()
        self.not_before = 0.0  # refuse timestamps before this (wall clock), after a reboot
        self._dir = journal_dir
        self._fd: int | None = None
        self._generation = 0
        self._rotate_at = 0.0
        self._boot = boot

    # -- start-up -------------------------------------------------------------------------

    def load(self, now: float) -> None:
        """Read the journal of earlier processes; call once before serving."""
        if self._dir is None:
            return
        ensure_private_dir(self._dir)
        marker = self._dir / "boot.json"
        try:
            previous = json.loads(marker.read_text()).get("boot_id")
        except (OSError, ValueError, AttributeError):
            previous = None
        current = self._boot()
        files = sorted(self._dir.glob("nonces.*"), key=_generation)
        first_start = previous is None and not files
        if not first_start and (previous != current or current == "unknown"):
            # SECURITY: the machine restarted since the journal was written: its unsynced
            # tail may be gone, so nothing signed before now is accepted.
            self.not_before = now
        if previous != current:
            write_private(marker, json.dumps({"boot_id": current}) + "\n")
        mono = self.monotonic()
        for path in files:
            data = path.read_bytes()
            for offset in range(0, len(data) - RECORD.size + 1, RECORD.size):
                key, expires = RECORD.unpack_from(data, offset)
                if expires > now:
                    self._remember(key, mono + min(expires - now, self.ttl + self.max_ahead))
        self._open(max((_generation(p) for p in files), default=0) + 1)
        assert self._fd is not None
        records = b"".join(RECORD.pack(k, now + (d - mono)) for k, d in self._seen.items())
        if records:
            os.write(self._fd, records)
        for path in files:  # the live entries are now in the new generation
            path.unlink(missing_ok=True)
        log.info("replay protection: %d live nonces restored%s", len(self._seen),
                 "; refusing requests signed before this start (machine rebooted)"
                 if self.not_before else "")

    def _open(self, generation: int) -> None:
        assert self._dir is not None
        if self._fd is not None:
            os.close(self._fd)
        self._generation = generation
        path = self._dir / f"nonces.{generation}"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._rotate_at = self.monotonic() + self.ttl + self.max_ahead
        (self._dir / f"nonces.{generation - 2}").unlink(missing_ok=True)

    # -- the hot path ---------------------------------------------------------------------

    def first_use(self, key: str, nonce: str, now: float, when: float) -> bool:
        """`when` is the request's (already skew-checked) timestamp."""
        d = digest(key, nonce)
        mono = self.monotonic()
        life = min(max(when + self.ttl - now, 0.0), self.ttl + self.max_ahead)
        with self._lock:
            while self._order and self._order[0][0] <= mono:
                deadline, old = self._order.popleft()
                if self._seen.get(old) == deadline:
                    del self._seen[old]
            if d in self._seen:
                return False
            self._remember(d, mono + life)
            if self._fd is not None:
                if mono >= self._rotate_at:
                    self._open(self._generation + 1)
                # SECURITY: written before the request is served; no fsync (see module doc).
                os.write(self._fd, RECORD.pack(d, when + self.ttl))
            return True

    def _remember(self, d: bytes, deadline: float) -> None:
        self._seen[d] = deadline
        self._order.append((deadline, d))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _generation(path: Path) -> int:
    suffix = path.name.rpartition(".")[2]
    return int(suffix) if suffix.isdigit() else 0
