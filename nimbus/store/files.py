"""Atomic, durable file writes and private directories (temp, fsync, rename, fsync dir)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


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


def atomic_write(path: Path, data: bytes, mode: int = 0o600, sync_dir: bool = True) -> None:
    """Replace path with data so a crash leaves either the old or the new file, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(path.parent)


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
