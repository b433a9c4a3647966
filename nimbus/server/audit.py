"""Append-only audit log of security events (JSON lines, 0600)."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any

from nimbus.security.hmac_sign import format_timestamp


class AuditLog:
    """One JSON object per line; never holds a secret (callers pass IDs and prefixes only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(self, event: str, now: float, **fields: Any) -> None:
        entry = {"time": format_timestamp(now), "ts": round(now, 3), "event": event, **fields}
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line)
            finally:
                os.close(fd)

    def read(self, since: float = 0.0, limit: int = 10000) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("ts", 0) >= since:
                out.append(entry)
        return out[-limit:]
