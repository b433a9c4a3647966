"""Atomic, durable file writes and private directories (temp, fsync, rename, fsync dir)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
from pathlib import Path

from nimbus.errors import DiskFull

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FAULT_ENV = "NIMBUS_FAULT_KILL_AT"
_faults = [0]


def fault_point() -> None:
    """Fault-injection hook for tests: with NIMBUS_FAULT_KILL_AT=N this process kills itself
    (SIGKILL, like a power cut for its own state) right before its N-th file write or rename,
    so a test can crash a command at every step and check that a re-run recovers."""
    at = os.environ.get(FAULT_ENV)
    if at:
        _faults[0] += 1
        if str(_faults[0]) == at.strip():
            os.kill(os.getpid(), signal.SIGKILL)


def ensure_private_dir(path: Path) -> Path:
    """Create path (and parents) and make the leaf 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (path.stat().st_mode & 0o777) != 0o700:
        os.chmod(path, 0o700)
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_full(path: Path) -> DiskFull:
    return DiskFull(f"the disk holding {path} is full (or its quota is used up); nothing was "
                    "changed: free some space and retry")


def temp_name(path: Path) -> Path:
    """`.<name>.<pid>.w<random>.tmp` next to path: the pid tells a live writer from a dead one."""
    return path.with_name(f".{path.name}.{os.getpid()}.w{secrets.token_hex(4)}.tmp")


def stage(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Write data to a durable temp file next to path; the caller renames it into place.

    On failure nothing is left behind; a full disk raises DiskFull naming the directory.
    """
    tmp = temp_name(path)
    fault_point()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise disk_full(path.parent) from None
        raise
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            raise disk_full(path.parent) from None
        raise
    os.close(fd)
    return tmp


def atomic_write(path: Path, data: bytes, mode: int = 0o600, sync_dir: bool = True) -> None:
    """Replace path with data so a crash leaves either the old or the new file, never a torn one."""
    tmp = stage(path, data, mode)
    try:
        fault_point()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: Path, all_writers: bool = False) -> list[str]:
    """Delete the temp files of interrupted writes in directory; returns their names.

    By default only those of dead processes (and never our own): another live process may be
    writing right now. all_writers=True is for a caller that holds the lock of every writer.
    """
    removed = []
    try:
        candidates = list(directory.glob(".*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        parts = tmp.name.split(".")  # ['', name..., pid, ('w' + random), 'tmp']
        field = parts[-3] if parts[-2].startswith("w") else parts[-2]
        pid = int(field) if field.isdigit() else None
        if not all_writers and (pid is None or pid == os.getpid() or _pid_alive(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp.name)
    return removed


def write_private(path: Path, data: str | bytes) -> None:
    """Write a secret file atomically with mode 0600."""
    atomic_write(path, data.encode() if isinstance(data, str) else data, mode=0o600)


def write_public(path: Path, data: str | bytes) -> None:
    atomic_write(path, data.encode() if isinstance(data, str) else data, mode=0o644)


def unsafe_permissions(paths: list[Path]) -> list[str]:
    """Describe every existing secret file or directory that others could read."""
    problems = []
    for path in paths:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            continue
        wanted = 0o700 if path.is_dir() else 0o600
        if mode & 0o077:
            problems.append(f"{path} is mode {mode:o}; fix it with: chmod {wanted:o} {path}")
    return problems
