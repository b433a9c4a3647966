"""Which control planes run on this host, and with which data dir.

Each running `nimbus serve` leaves `<pid>.json` ({pid, data_dir, api_url}) in a per-user
runtime directory — /run/nimbus as root, else $XDG_RUNTIME_DIR/nimbus or /tmp/nimbus-<uid>
(0700) — and removes it when it stops; a record whose process is gone (kill -9) is ignored
and swept. `nimbus bootstrap` reads them, so a local bootstrap cannot silently create a
second control plane in another data dir.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def runtime_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/nimbus")
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "nimbus"
    return Path(f"/tmp/nimbus-{os.geteuid()}")  # noqa: S108 - 0700, owner-checked


def register(data_dir: Path, api_url: str, *, root: Path | None = None) -> Path | None:
    """Record this process as a control plane using data_dir; returns the record's path."""
    from nimbus.store.files import ensure_private_dir, write_private

    directory = root or runtime_dir()
    try:
        ensure_private_dir(directory)
        path = directory / f"{os.getpid()}.json"
        write_private(path, json.dumps({"pid": os.getpid(), "api_url": api_url,
                                        "data_dir": str(data_dir.resolve())}) + "\n")
        return path
    except Exception:  # noqa: BLE001 - discovery is a courtesy; it never stops the server
        return None


def unregister(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def running(*, root: Path | None = None) -> list[dict[str, Any]]:
    """Records of control planes that are still alive on this host (for this user)."""
    directory = root or runtime_dir()
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
            pid = int(rec["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid):
            found.append(rec)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return found


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in cmdline


def others(data_dir: Path, *, root: Path | None = None) -> list[dict[str, Any]] | None:
    """The control planes running with another data dir, or None when one uses data_dir."""
    mine = str(data_dir.resolve())
    live = running(root=root)
    if any(rec.get("data_dir") == mine for rec in live):
        return None
    return [rec for rec in live if rec.get("data_dir") != mine]
