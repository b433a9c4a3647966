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

A journal that cannot be written (a full disk) never stops reads: the marker file
`replay/complete` ("every nonce accepted is in the journal") is removed first (an unlink
needs no space), and then a signed read is accepted with its nonce in memory only, while a
signed write is refused with 507. A start that finds the journal without its marker treats
it like a reboot (`not_before`), so a read accepted while the disk was full cannot be
replayed after a restart or kill -9 either. Once the journal takes writes again, the nonces
it missed are appended and the marker comes back. See docs/decisions.md ("Replay protection
on a full disk").

Journal files rotate every ttl + skew seconds and two generations are kept: an entry
expires at most ttl + skew after it was written, so a dropped file holds only nonces
whose window has closed.
"""

from __future__ import annotations

import errno
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

from nimbus.errors import DiskFull
from nimbus.store.files import ensure_private_dir, write_private

log = logging.getLogger("nimbus.replay")
RECORD = struct.Struct("<16sd")  # digest, wall-clock expiry
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
COMPLETE = "complete"  # marker: every accepted nonce of the process that made it is journaled


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
        self._size = 0             # bytes of whole records in the open journal file
        self._generation = 0
        self._rotate_at = 0.0
        self._boot = boot
        self.failing: str | None = None   # why the journal cannot be written, while it cannot
        self._missed: list[bytes] = []    # records accepted while failing, not yet journaled

    # -- start-up -------------------------------------------------------------------------

    def load(self, now: float) -> None:
        """Read the journal of earlier processes; call once before serving."""
        if self._dir is None:
            return
        ensure_private_dir(self._dir)
        files = sorted(self._dir.glob("nonces.*"), key=_generation)
        self._check_boot(now, bool(files))
        mono = self.monotonic()
        for path in files:
            data = path.read_bytes()
            for offset in range(0, len(data) - RECORD.size + 1, RECORD.size):
                key, expires = RECORD.unpack_from(data, offset)
                if expires > now:
                    self._remember(key, mono + min(expires - now, self.ttl + self.max_ahead))
        records = b"".join(RECORD.pack(k, now + (d - mono)) for k, d in self._seen.items())
        try:
            self._open(max((_generation(p) for p in files), default=0) + 1)
            self._append(records)
            _make_marker(self._dir / COMPLETE)
        except OSError as exc:
            # A full disk at start-up: the old files stay (they hold the live nonces), no
            # marker, and reads are served from memory as below.
            self._fail(exc)
        else:
            for path in files:  # the live entries are now in the new generation
                path.unlink(missing_ok=True)
        log.info("replay protection: %d live nonces restored%s", len(self._seen),
                 "; refusing requests signed before this start (machine rebooted, or the "
                 "journal was incomplete)" if self.not_before else "")

    def _check_boot(self, now: float, journal_exists: bool) -> None:
        assert self._dir is not None
        marker = self._dir / "boot.json"
        try:
            previous = json.loads(marker.read_text()).get("boot_id")
        except (OSError, ValueError, AttributeError):
            previous = None
        current = self._boot()
        first_start = previous is None and not journal_exists
        complete = (self._dir / COMPLETE).exists()
        if not first_start and (previous != current or current == "unknown" or not complete):
            # SECURITY: the machine restarted since the journal was written (its unsynced
            # tail may be gone), or a process accepted nonces it could not journal: nothing
            # signed before now is accepted.
            self.not_before = now
        (self._dir / COMPLETE).unlink(missing_ok=True)  # until this process has journaled
        if previous != current:
            write_private(marker, json.dumps({"boot_id": current}) + "\n")

    def _open(self, generation: int) -> None:
        assert self._dir is not None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        path = self._dir / f"nonces.{generation}"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size
        self._generation = generation
        self._rotate_at = self.monotonic() + self.ttl + self.max_ahead
        (self._dir / f"nonces.{generation - 2}").unlink(missing_ok=True)

    def _append(self, data: bytes) -> None:
        """Append whole records or nothing: a torn record would misalign every later one."""
        assert self._fd is not None
        if not data:
            return
        written = os.write(self._fd, data)
        if written == len(data):
            self._size += written
            return
        try:  # a short write (the disk filled up mid-record): take the torn part back
            os.ftruncate(self._fd, self._size)  # shrinking needs no space
        except OSError:
            os.close(self._fd)  # this file may end in a torn record: write no more to it
            self._fd = None
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # -- the hot path ---------------------------------------------------------------------

    def first_use(self, key: str, nonce: str, now: float, when: float,
                  durable: bool = True) -> bool:
        """`when` is the request's (already skew-checked) timestamp. `durable=False` marks a
        read, which a journal that cannot be written does not stop (module docstring);
        otherwise that raises DiskFull (507) and the nonce is not consumed."""
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
            if self._dir is not None:
                self._journal(RECORD.pack(d, when + self.ttl), mono, now, durable)
            self._remember(d, mono + life)
            return True

    def _journal(self, record: bytes, mono: float, now: float, durable: bool) -> None:
        if self.failing is None and self._fd is not None:
            try:
                if mono >= self._rotate_at:
                    self._open(self._generation + 1)
                # SECURITY: written before the request is served; no fsync (module doc).
                self._append(record)
                return
            except OSError as exc:
                self._fail(exc)
        elif self._recover(now, record):
            return
        if durable:
            raise DiskFull(f"the disk holding {self._dir} cannot be written ({self.failing}); "
                           "until it can, only reads are served: free some space and retry")
        self._missed.append(record)  # the marker is gone (_fail), so memory alone is safe

    def _fail(self, exc: OSError) -> None:
        """The journal cannot be written: remove the marker before any nonce goes unjournaled;
        if even that fails, nothing signed is accepted (raises DiskFull)."""
        if self.failing is None:
            log.warning("replay journal cannot be written (%s): signed writes get 507, "
                        "reads are served", exc.strerror or exc)
        self.failing = exc.strerror or str(exc)
        assert self._dir is not None
        try:
            (self._dir / COMPLETE).unlink(missing_ok=True)
        except OSError as again:
            raise DiskFull(f"the disk holding {self._dir} cannot be written "
                           f"({again.strerror}); signed requests are refused until it can"
                           ) from again

    def _recover(self, now: float, record: bytes) -> bool:
        """Retry the journal: on success it has every missed nonce and `record`, and the
        marker is back."""
        assert self._dir is not None
        live = [r for r in self._missed if RECORD.unpack(r)[1] > now]
        try:
            if self._fd is None:
                self._open(self._generation + 1)
            self._append(b"".join(live) + record)
        except OSError as exc:
            self._missed = live
            self._fail(exc)
            return False
        self._missed = []
        try:
            _make_marker(self._dir / COMPLETE)
        except OSError:
            return True  # journaled; the marker comes back with a later request
        log.warning("replay journal is written again")
        self.failing = None
        return True

    def _remember(self, d: bytes, deadline: float) -> None:
        self._seen[d] = deadline
        self._order.append((deadline, d))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _make_marker(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def _generation(path: Path) -> int:
    suffix = path.name.rpartition(".")[2]
    return int(suffix) if suffix.isdigit() else 0
