"""Backups of a control plane's data dir: a consistent online snapshot, and its restore.

The archive is a gzipped tar holding every file of the data dir that holds or protects data
(the CA, the keys, the store, the audit log) and a manifest with a SHA-256 of each file.
Host-local files are left out: endpoint.json (rewritten at start), bootstrap.secret (a new one
is made if needed), store.lock and temp files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from nimbus import __version__
from nimbus.errors import ConfigError
from nimbus.store.files import atomic_write, ensure_private_dir, fsync_dir

MANIFEST = "nimbus-backup.json"
FORMAT = 1
STORE_DIR = "store"
LEFT_OUT = {"endpoint.json", "bootstrap.secret"}
# The data dir's own files a backup holds (and a restore writes); nothing else, so an
# archive cannot plant a file the server or an operator would later trust.
KNOWN_FILES = {"ca.crt", "ca.key", "server.crt", "server.key", "jwt.key", "store.key",
               "wg.key", "audit.log"}
_ROTATED_AUDIT = re.compile(r"audit\.log\.[1-9][0-9]{0,2}")
# SECURITY: bounds checked while the archive streams, before anything is written; a real
# store of 10,000 nodes with a full audit history is well under a tenth of this.
MAX_MEMBERS = 4096
MAX_MEMBER_BYTES = 256 << 20
MAX_TOTAL_BYTES = 512 << 20
MAX_MANIFEST_BYTES = 4 << 20
MAX_HEADER_BYTES = 64 << 10  # pax / GNU long-name headers, which tarfile reads whole
_CHUNK = 1 << 20


def known_file(name: str) -> bool:
    """A top-level file of the data dir that backups hold."""
    return name in KNOWN_FILES or _ROTATED_AUDIT.fullmatch(name) is not None


def _data_files(data_dir: Path) -> dict[str, bytes]:
    """The data dir's own files (not the store), read as they are now."""
    files = {}
    for path in sorted(data_dir.iterdir()):
        if not known_file(path.name) or not path.is_file():
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


class _Member(tarfile.TarInfo):
    """tarfile reads a pax or GNU long-name header into memory whole: bound it first."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED and self.size > MAX_HEADER_BYTES:
            raise tarfile.HeaderError(f"an extended header of {self.size} bytes")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


_EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
             tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class _Bounded(io.RawIOBase):
    """The decompressed stream, cut off past `limit` bytes: whatever the tar headers say,
    no more than that is ever read (the backstop behind the per-member checks)."""

    def __init__(self, raw: Any, limit: int) -> None:
        self.raw, self.left = raw, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self.raw.read(min(len(buf), _CHUNK))
        self.left -= len(data)
        if self.left < 0:
            raise _TooBig(f"it expands to more than {MAX_TOTAL_BYTES >> 20} MiB")
        buf[:len(data)] = data
        return len(data)


class _TooBig(Exception):
    pass


def _refuse(archive: Path, why: str) -> ConfigError:
    return ConfigError(f"{archive}: {why}; refusing to restore it")


def _check_member(archive: Path, member: tarfile.TarInfo, count: int, total: int,
                  seen: set[str]) -> None:
    # SECURITY: only plain files with the names a backup has; no links, devices, sparse
    # files or paths out of the data dir, each name once, within the size bounds.
    if (not member.isreg() or member.issparse() or not _safe(member.name)
            or member.name in seen):
        raise _refuse(archive, f"it holds an unexpected entry {member.name[:200]!r}")
    if count > MAX_MEMBERS:
        raise _refuse(archive, f"it holds more than {MAX_MEMBERS} entries")
    if member.size > MAX_MEMBER_BYTES or total > MAX_TOTAL_BYTES:
        raise _refuse(archive, f"it expands to more than {MAX_TOTAL_BYTES >> 20} MiB "
                               f"({member.name[:200]!r} alone is {member.size} bytes)")


def _manifest(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict[str, Any]:
    if member.name != MANIFEST or member.size > MAX_MANIFEST_BYTES:
        raise ConfigError(f"{archive} is not a Nimbus backup (it does not start with "
                          f"{MANIFEST})")
    try:
        manifest = json.loads(_read(tar, member))
        valid = manifest["format"] == FORMAT and isinstance(manifest["files"], dict)
        valid = valid and all(isinstance(v, dict) for v in manifest["files"].values())
    except (KeyError, ValueError, TypeError):
        valid = False
    if not valid:
        raise ConfigError(f"{archive} is not a Nimbus backup (no valid {MANIFEST})")
    if len(manifest["files"]) >= MAX_MEMBERS:  # every other entry must be listed here
        raise _refuse(archive, f"it holds more than {MAX_MEMBERS} entries")
    return manifest


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    extracted = tar.extractfile(member)
    return extracted.read() if extracted else b""


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path, mode: int) -> str:
    """Stream one member into a new file (fsynced); returns its SHA-256."""
    digest = hashlib.sha256()
    src = tar.extractfile(member)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        while src is not None:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            os.write(fd, chunk)  # a regular file: short writes only on a full disk (OSError)
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _unpack(archive: Path, into: Path) -> dict[str, Any]:
    """Check and stream the archive's files into the (new, empty) directory `into`."""
    manifest: dict[str, Any] | None = None
    seen: set[str] = set()
    count = total = 0
    slack = (MAX_MEMBERS + 8) * 1024 + MAX_MANIFEST_BYTES  # headers, padding, the manifest
    with open(archive, "rb") as raw, gzip.GzipFile(fileobj=raw) as gz, tarfile.open(
            fileobj=_Bounded(gz, MAX_TOTAL_BYTES + slack), mode="r|",
            tarinfo=_Member) as tar:
        for member in tar:
            count, total = count + 1, total + member.size
            _check_member(archive, member, count, total, seen)
            seen.add(member.name)
            if manifest is None:
                manifest = _manifest(archive, tar, member)
                continue
            entry = manifest["files"].get(member.name)
            if entry is None:
                raise ConfigError(f"{archive} holds {member.name!r}, which its manifest does "
                                  "not list")
            mode = 0o644 if entry.get("mode") == "644" else 0o600
            if _extract(tar, member, into / member.name, mode) != entry.get("sha256"):
                raise ConfigError(f"{archive} is damaged: {member.name} does not match its "
                                  "checksum")
    if manifest is None:
        raise ConfigError(f"{archive} is not a Nimbus backup (no valid {MANIFEST})")
    if set(manifest["files"]) != seen - {MANIFEST}:
        raise ConfigError(f"{archive} does not hold the files its manifest lists")
    if f"{STORE_DIR}/meta.json" not in seen:
        raise ConfigError(f"{archive} holds no store")
    return manifest


def _safe(name: str) -> bool:
    parts = name.split("/")
    if name == MANIFEST:
        return True
    if len(parts) == 2 and parts[0] == STORE_DIR:
        return parts[1].endswith(".json") and parts[1][:-5].isidentifier()
    return len(parts) == 1 and known_file(name)


def restore(archive: Path, data_dir: Path) -> dict[str, Any]:
    """Unpack a backup into data_dir, which must be empty or not exist; returns the manifest.

    The files are streamed into a private staging directory beside data_dir, which becomes
    data_dir with one rename once every check passed: a refused or interrupted restore
    leaves nothing behind but that staging directory (removed unless killed)."""
    data_dir = Path(data_dir).absolute()
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise ConfigError(f"refusing to restore into {data_dir}: it is not empty (restore into "
                          "a new directory, then point the server at it)")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=data_dir.parent))
    try:
        ensure_private_dir(staging / STORE_DIR)
        try:
            manifest = _unpack(Path(archive), staging)
        except _TooBig as exc:
            raise _refuse(Path(archive), str(exc)) from None
        except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
            raise ConfigError(f"{archive} is not a readable Nimbus backup: {exc}") from None
        fsync_dir(staging / STORE_DIR)
        fsync_dir(staging)
        try:
            os.replace(staging, data_dir)  # an empty data_dir is replaced too (rename(2))
        except OSError as exc:
            raise ConfigError(f"cannot restore into {data_dir}: {exc.strerror}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(data_dir.parent)
    return manifest


def describe(manifest: dict[str, Any]) -> str:
    files = manifest["files"]
    collections = sum(1 for n in files if n.startswith(f"{STORE_DIR}/") and
                      n != f"{STORE_DIR}/meta.json")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(manifest["created_at"]))
    return f"{len(files)} files ({collections} collections), taken {when}"

