"""Audit log of security events: JSON lines (0600), size-capped rotation, refusals aggregated.

SECURITY: the log must stay useful and bounded when someone hammers the server. A refusal
(`*.refused`, `*.failed`) from one source is written once per interval; the repeats are
counted and written as one `aggregated` line per (event, source) when the interval ends.
The file rotates at `max_bytes` into `audit.log.1` … `audit.log.<files-1>`; reads go
across the rotation. Counts of the interval in progress are lost if the process is
killed with SIGKILL (at most `interval` seconds of repeats; their first line is on disk).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nimbus.security.hmac_sign import format_timestamp

REFUSALS = (".refused", ".failed")
MAX_VALUES = 10  # distinct values kept per field in an aggregated line
MAX_BUCKETS = 10_000  # sources being aggregated at once; past that, flush them all


class _Bucket:
    def __init__(self, started: float) -> None:
        self.started = started
        self.count = 0
        self.last = started
        self.values: dict[str, dict[str, int]] = {}
        self.more = 0

    def add(self, now: float, fields: dict[str, Any]) -> None:
        self.count += 1
        self.last = now
        for key, value in fields.items():
            counts = self.values.setdefault(key, {})
            text = str(value)[:128]
            if text in counts or len(counts) < MAX_VALUES:
                counts[text] = counts.get(text, 0) + 1
            else:
                self.more += 1


class AuditLog:
    """One JSON object per line; never holds a secret (callers pass IDs and prefixes only)."""

    def __init__(self, path: Path, max_bytes: int = 10 * 1024 * 1024, files: int = 5,
                 interval: float = 60.0) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.files = max(1, files)
        self.interval = interval
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._timer: threading.Timer | None = None
        self._scan_at = 0.0

    def record(self, event: str, now: float, **fields: Any) -> None:
        source = fields.get("source")
        if self.interval > 0 and source is not None and event.endswith(REFUSALS):
            with self._lock:
                if now >= self._scan_at or len(self._buckets) >= MAX_BUCKETS:
                    self._scan_at = now + 1.0
                    self._flush_due(now if len(self._buckets) < MAX_BUCKETS else None)
                bucket = self._buckets.get((event, str(source)))
                if bucket is not None:  # a repeat: counted, written when the interval ends
                    bucket.add(now, {k: v for k, v in fields.items() if k != "source"})
                    self._schedule()
                    return
                self._buckets[(event, str(source))] = _Bucket(now)
        self._write([self._entry(event, now, fields)])

    def flush(self) -> None:
        """Write every pending aggregated line now (at shutdown; the timer does it otherwise)."""
        with self._lock:
            self._flush_due(None)

    def _flush_due(self, now: float | None) -> None:
        """Write the lines of intervals that are over (all of them when now is None)."""
        lines = []
        for key, bucket in list(self._buckets.items()):
            if now is None or now - bucket.started >= self.interval:
                del self._buckets[key]
                if bucket.count:
                    lines.append(self._aggregate(key, bucket))
        if lines:
            self._write(lines)

    def _aggregate(self, key: tuple[str, str], bucket: _Bucket) -> dict[str, Any]:
        event, source = key
        fields: dict[str, Any] = {"source": source, "aggregated": True, "count": bucket.count,
                                  "first_ts": round(bucket.started, 3),
                                  "last_ts": round(bucket.last, 3), "values": bucket.values}
        if bucket.more:
            fields["other_values"] = bucket.more
        return self._entry(event, bucket.last, fields)

    def _schedule(self) -> None:
        if self._timer is None or not self._timer.is_alive():
            self._timer = threading.Timer(self.interval, self._on_timer)
            self._timer.daemon = True
            self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            self._flush_due(None)

    @staticmethod
    def _entry(event: str, now: float, fields: dict[str, Any]) -> dict[str, Any]:
        return {"time": format_timestamp(now), "ts": round(now, 3), "event": event, **fields}

    def _write(self, entries: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries).encode()
        lock = os.open(self.path.with_name(self.path.name + ".lock"),
                       os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            # The lock is a separate file: rotation renames audit.log under it, and another
            # process (a local `nimbus bootstrap`) may be writing too.
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._rotate_if_full(len(data))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        finally:
            os.close(lock)

    def _rotate_if_full(self, adding: int) -> None:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return
        if size == 0 or size + adding <= self.max_bytes:
            return
        if self.files == 1:
            os.truncate(self.path, 0)
            return
        for n in range(self.files - 1, 1, -1):
            older = self._rotated(n - 1)
            if older.exists():
                os.replace(older, self._rotated(n))
        os.replace(self.path, self._rotated(1))

    def _rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def read(self, since: float = 0.0, limit: int = 10000) -> list[dict[str, Any]]:
        """The last `limit` entries with ts >= since, oldest first, across the rotated files.

        SECURITY: read newest first, backwards in blocks, stopping at `limit` or at entries
        older than `since` (less the aggregation interval, by which an aggregated line's ts
        may trail the lines around it): a read costs the entries it returns, never the whole
        rotated history (which an admin polling `nimbus audit` would otherwise load each time).
        """
        out: list[dict[str, Any]] = []
        stop_below = since - self.interval - 60.0
        for path in [self.path, *(self._rotated(n) for n in range(1, self.files))]:
            for line in _lines_backwards(path):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                ts = entry.get("ts", 0) if isinstance(entry, dict) else None
                if not isinstance(ts, (int, float)):
                    continue
                if ts >= since:
                    out.append(entry)
                    if len(out) >= limit:
                        return out[::-1]
                elif ts < stop_below:
                    return out[::-1]
        return out[::-1]


MAX_LINE = 1 << 20  # longer "lines" are not ours (a damaged file): skipped, never buffered
_BLOCK = 64 * 1024


def _lines_backwards(path: Path) -> Iterator[bytes]:
    """The file's non-empty lines, last first, reading fixed-size blocks from the end."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - a generator holds it across yields
    except FileNotFoundError:
        return
    with f:
        pos = f.seek(0, os.SEEK_END)
        tail, skipping = b"", False
        while pos > 0:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            parts = (f.read(step) + tail).split(b"\n")
            tail = parts[0]
            complete = parts[1:]
            if skipping and complete:  # the start of the overlong line ends this block
                complete, skipping = complete[:-1], False
            for line in reversed(complete):
                if line:
                    yield line
            if len(tail) > MAX_LINE:
                tail, skipping = b"", True
        if tail and not skipping:
            yield tail
