"""Backups of a control plane's data dir: a consistent online snapshot, and its restore.

The archive is a gzipped tar holding every file of the data dir that holds or protects data
(the CA, the keys, the store, the audit log) and a manifest with a SHA-256 of each file.
Host-local files are left out: endpoint.json (rewritten at start), bootstrap.secret (a new one
is made if needed), store.lock and temp files.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

from nimbus import __version__
from nimbus.errors import ConfigError
from nimbus.store.files import atomic_write, ensure_private_dir, fsync_dir

MANIFEST = "nimbus-backup.json"
FORMAT = 1
STORE_DIR = "store"
LEFT_OUT = {"endpoint.json", "bootstrap.secret"}
MAX_MEMBER_BYTES = 1 << 30


def _data_files(data_dir: Path) -> dict[str, bytes]:
    """The data dir's own files (not the store), read as they are now."""
    files = {}
    for path in sorted(data_dir.iterdir()):
        if path.name.startswith(".") or path.name in LEFT_OUT or not path.is_file():
            continue
        files[path.name] = path.read_bytes()
    if "audit.log" in files:  # appended to while we read: keep whole lines only
        log = files["audit.log"]
        files["audit.log"] = log[:log.rfind(b"\n") + 1]
    return files


def create(data_dir: Path, output: Path) -> dict[str, Any]:
    """Write a backup of data_dir to output (0600); returns the manifest."""
    from nimbus.server import verify
    from nimbus.store import Store

    data_dir = Path(data_dir)
    if not verify.initialized(data_dir):
        raise ConfigError(f"{data_dir} holds no control plane (no {STORE_DIR}/meta.json)")
    # The store snapshot is taken under its lock; the key files only change at first start.
    store_files = Store(data_dir / STORE_DIR).snapshot()
    files = _data_files(data_dir)
    files.update({f"{STORE_DIR}/{name}": body for name, body in store_files.items()})
    modes = {name: (0o644 if name.endswith(".crt") else 0o600) for name in files}
    manifest = {"format": FORMAT, "nimbus_version": __version__,
                "created_at": round(time.time(), 3), "source": str(data_dir.resolve()),
                "files": {name: {"sha256": hashlib.sha256(body).hexdigest(),
                                 "mode": f"{modes[name]:o}"} for name, body in files.items()}}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        _add(tar, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode(), 0o600)
        for name, body in files.items():
            _add(tar, name, body, modes[name])
    atomic_write(Path(output), buf.getvalue(), mode=0o600)
    return manifest


def _add(tar: tarfile.TarFile, name: str, body: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(body), mode, int(time.time())
    tar.addfile(info, io.BytesIO(body))


def _read_archive(archive: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                # SECURITY: only plain files with plain names; no links, no paths out of D.
                if not member.isfile() or member.size > MAX_MEMBER_BYTES or not _safe(
                        member.name):
                    raise ConfigError(f"{archive} holds an unexpected entry {member.name!r}; "
                                      "refusing to restore it")
                extracted = tar.extractfile(member)
                files[member.name] = extracted.read() if extracted else b""
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ConfigError(f"{archive} is not a readable Nimbus backup: {exc}") from None
    try:
        manifest = json.loads(files.pop(MANIFEST))
        valid = manifest["format"] == FORMAT and isinstance(manifest["files"], dict)
    except (KeyError, ValueError, TypeError):
        valid = False
    if not valid:
        raise ConfigError(f"{archive} is not a Nimbus backup (no valid {MANIFEST})")
    if set(manifest["files"]) != set(files):
        raise ConfigError(f"{archive} does not hold the files its manifest lists")
    for name, body in files.items():
        if hashlib.sha256(body).hexdigest() != manifest["files"][name].get("sha256"):
            raise ConfigError(f"{archive} is damaged: {name} does not match its checksum")
    if f"{STORE_DIR}/meta.json" not in files:
        raise ConfigError(f"{archive} holds no store")
    return manifest, files


def _safe(name: str) -> bool:
    parts = name.split("/")
    if name == MANIFEST:
        return True
    if len(parts) == 2 and parts[0] == STORE_DIR:
        return parts[1].endswith(".json") and parts[1][:-5].isidentifier()
    return len(parts) == 1 and not name.startswith(".") and name not in ("", STORE_DIR)


def restore(archive: Path, data_dir: Path) -> dict[str, Any]:
    """Unpack a backup into data_dir, which must be empty or not exist; returns the manifest."""
    data_dir = Path(data_dir)
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise ConfigError(f"refusing to restore into {data_dir}: it is not empty (restore into "
                          "a new directory, then point the server at it)")
    manifest, files = _read_archive(Path(archive))
    ensure_private_dir(data_dir)
    store_dir = ensure_private_dir(data_dir / STORE_DIR)
    # meta.json last: until it exists the dir does not count as a control plane, and a
    # restore that was interrupted is refused by `serve` (collections without meta.json).
    order = sorted(files, key=lambda n: n == f"{STORE_DIR}/meta.json")
    for name in order:
        mode = 0o644 if manifest["files"][name].get("mode") == "644" else 0o600
        atomic_write(data_dir / name, files[name], mode=mode, sync_dir=False)
    fsync_dir(store_dir)
    fsync_dir(data_dir)
    return manifest


def describe(manifest: dict[str, Any]) -> str:
    files = manifest["files"]
    collections = sum(1 for n in files if n.startswith(f"{STORE_DIR}/") and
                      n != f"{STORE_DIR}/meta.json")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(manifest["created_at"]))
    return f"{len(files)} files ({collections} collections), taken {when}"

