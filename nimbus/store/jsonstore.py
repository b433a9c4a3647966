"""Store: one JSON file per collection, a file lock, a journal for multi-file commits.

Readers get cached snapshots that they must not mutate; a transaction works on deep
copies and swaps them in only after the files are durably on disk, so neither another
thread nor a crash ever sees a half-applied change.

A multi-file commit first stages every new file as a durable temp file, then writes a small
journal naming them (the commit point), then renames them into place. A failure before the
commit point (a full disk, say) removes the staged files and changes nothing; after it, only
renames remain, which need no space, and recovery finishes them after a crash.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from nimbus.errors import StoreError
from nimbus.store.files import (
    atomic_write,
    ensure_private_dir,
    fault_point,
    fsync_dir,
    remove_stale_temps,
    stage,
)

log = logging.getLogger("nimbus.store")
SCHEMA_VERSION = 1
JOURNAL = "_journal.json"
META = "meta"
# Migrations from version N to N+1; each rewrites the collections dict in place.
MIGRATIONS: dict[int, Callable[[dict[str, dict[str, Any]]], None]] = {}


# How stale the server's hot paths let a snapshot be (Store.read's max_age): another
# process's commit (a second server on the data dir, a local `nimbus bootstrap`) reaches
# them within this; this process's own commits at once.
HOT_READ_MAX_AGE_SEC = 0.05

_COMPACT = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def _encode(obj: Any) -> bytes:
    """Deterministic JSON through the C encoder (indent= falls back to the pure-Python one,
    4x slower: 170 ms instead of 45 ms for 10,000 nodes). A collection document gets one
    line per record, so operators can still grep, diff and read it."""
    if isinstance(obj, dict) and obj.keys() == {"schema", "data"} and isinstance(
            obj["data"], dict):
        data = obj["data"]
        return _document_bytes(obj["schema"], {k: _row(k, v) for k, v in data.items()})
    return _COMPACT(obj).encode()


def _row(key: str, record: Any) -> str:
    return f"{_COMPACT(key)}:{_COMPACT(record)}"


def _document_bytes(schema: int, rows: dict[str, str]) -> bytes:
    """A collection document from its records' encoded lines ({key: line})."""
    body = ",\n".join(rows[k] for k in sorted(rows))
    return f'{{"schema":{_COMPACT(schema)},"data":{{\n{body}\n}}}}\n'.encode()


def _legacy_encode(obj: Any) -> bytes:
    """How journals were encoded before; still accepted when recovering one."""
    return json.dumps(obj, indent=1, sort_keys=True).encode()


class Store:
    """Collections of JSON objects under root/, safe between threads and processes."""

    def __init__(self, root: Path, migrations: dict[int, Callable[..., None]] | None = None,
                 schema_version: int = SCHEMA_VERSION) -> None:
        self.root = ensure_private_dir(Path(root))
        self.schema_version = schema_version
        self._migrations = MIGRATIONS if migrations is None else migrations
        self._cache: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
        self._mutex = threading.RLock()
        self._path_strs: dict[str, str] = {}  # validated collection file names, for read()
        # When each cached collection was last found to match its file (read's max_age).
        self._checked: dict[str, float] = {}
        # What replace() last wrote per collection: (file stamp, {key: encoded line}).
        self._rows: dict[str, tuple[tuple[int, int, int], dict[str, str]]] = {}
        self._held = threading.local()  # flock depth of this thread (flock is per fd)
        self._lock_path = self.root / "store.lock"
        self._collections: set[str] = set()  # collections meta.json says must exist
        with self._locked(fcntl.LOCK_EX):
            self._recover()
            removed = remove_stale_temps(self.root, all_writers=True)
            if removed:
                log.info("removed %d temp file(s) of interrupted writes in %s",
                         len(removed), self.root)
            self._migrate()

    # -- locking -------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, kind: int) -> Iterator[None]:
        depth = getattr(self._held, "depth", 0)
        if depth:
            # This thread already holds the lock (a read inside a transaction): a second
            # flock on a new fd would wait for ourselves forever.
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth = depth
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, kind)
            self._held.depth = 1
            yield
        finally:
            self._held.depth = 0
            os.close(fd)  # closing releases the flock

    # -- reading -------------------------------------------------------------
    def _path_str(self, name: str) -> str:
        self._path_strs[name] = text = str(self._path(name))
        return text

    def _path(self, name: str) -> Path:
        if not name.isidentifier():
            raise StoreError(f"invalid collection name {name!r}")
        return self.root / f"{name}.json"

    def _load(self, name: str, schema: int | None = None) -> dict[str, Any]:
        path = self._path(name)
        try:
            st = path.stat()
        except FileNotFoundError:
            if name in self._collections or name in self._read_meta().get("collections", ()):
                raise StoreError(f"store file {path} is missing although the store wrote it "
                                 "before; restore it from a backup (nimbus restore)") from None
            self._cache[name] = ((0, 0, 0), {})
            return self._cache[name][1]
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._cache.get(name)
        if cached and cached[0] == stamp:
            return cached[1]
        data = load_document(path, self.schema_version if schema is None else schema)
        self._cache[name] = (stamp, data)
        return data

    def read(self, name: str, max_age: float = 0.0) -> dict[str, Any]:
        """A snapshot of a collection (do not mutate it).

        This process's own commits show at once. Another process's show at once too, unless
        `max_age` lets the snapshot be up to that many seconds older than the file: the
        hot paths of the server (authentication, the node listing) read so, which spares
        them an os.stat per collection per request. Every stat released the GIL, and with
        16 busy connections each release was a thread hand-off: 19 context switches per
        cached listing instead of 13, -15 % requests/s.
        """
        # Fast path without the mutex: with 64 server threads, serialising every read on it
        # cost more than the reads. A cache entry is replaced whole (one atomic dict store)
        # and is only valid while the file's (inode, mtime, size) still match, so a reader
        # sees the last committed snapshot, never a partial one.
        cached = self._cache.get(name)
        if cached is not None:
            now = time.monotonic()
            if max_age and now - self._checked.get(name, -max_age) < max_age:
                return cached[1]
            try:
                st = os.stat(self._path_strs.get(name) or self._path_str(name))
                if cached[0] == (st.st_ino, st.st_mtime_ns, st.st_size):
                    self._checked[name] = now
                    return cached[1]
            except FileNotFoundError:
                if cached[0] == (0, 0, 0):
                    self._checked[name] = now
                    return cached[1]
        with self._mutex:
            path = self._path(name)
            cached = self._cache.get(name)
            if cached is not None:
                try:
                    st = path.stat()
                    if cached[0] == (st.st_ino, st.st_mtime_ns, st.st_size):
                        return cached[1]
                except FileNotFoundError:
                    if cached[0] == (0, 0, 0):
                        return cached[1]
            with self._locked(fcntl.LOCK_SH):
                if (self.root / JOURNAL).exists():
                    # A writer crashed mid-commit; recovery needs the exclusive lock.
                    pass
                else:
                    return self._load(name)
            with self._locked(fcntl.LOCK_EX):
                self._recover()
                return self._load(name)

    def lookup(self, name: str, key: str, max_age: float,
               valid: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
        """One record from a snapshot at most `max_age` old, if it is there (and `valid`);
        otherwise from the current file. So a hot path skips the os.stat, and a record
        another process has just created or changed is still found at once."""
        record = self.read(name, max_age).get(key)
        if record is not None and (valid is None or valid(record)):
            return record
        return self.read(name).get(key)

    # -- writing -------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, *names: str) -> Iterator[dict[str, dict[str, Any]]]:
        """Lock, hand out private copies of the named collections, commit them atomically."""
        if getattr(self._held, "depth", 0):
            raise StoreError("nested store transactions are not supported; "
                             "name every collection in one transaction")
        with self._mutex, self._locked(fcntl.LOCK_EX):
            self._recover()
            originals = {n: self._load(n) for n in names}
            work = {n: copy.deepcopy(d) for n, d in originals.items()}
            yield work
            changed = {n: d for n, d in work.items() if d != originals[n]}
            if changed:
                self._commit(changed)

    def replace(self, name: str, data: dict[str, Any],
                changed: Collection[str] | None = None) -> None:
        """Write a whole collection without a copy-on-write round trip (batched hot data).

        The store takes ownership of `data`: the caller must not change it afterwards.
        Skipping the deep copy, the comparison and the re-read saves ~150 ms per write of
        10,000 records, all of it time other threads would wait for the GIL.

        `changed` names the records that may differ from the previous replace() of this
        collection; the others' encoded lines are reused, so a flush of 200 changed records
        among 10,000 encodes 200 (the 10,000 took 0.1-0.4 s of GIL every 5 s, the heartbeat
        p99). Only while the file is still the one that replace() wrote: any other write
        to it, from this process or another, means everything is encoded again.
        """
        with self._mutex, self._locked(fcntl.LOCK_EX):
            self._recover()
            path = self._path(name)
            if name not in self._collections:
                self._commit({name: data})
                return
            rows = self._reusable_rows(name, path) if changed is not None else None
            if rows is None:
                rows = {k: _row(k, v) for k, v in data.items()}
            else:
                rows = {k: rows[k] if k in rows and k not in changed else _row(k, v)
                        for k, v in data.items()}
            atomic_write(path, _document_bytes(self.schema_version, rows))
            st = path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            self._cache[name] = (stamp, data)
            self._rows[name] = (stamp, rows)

    def _reusable_rows(self, name: str, path: Path) -> dict[str, str] | None:
        kept = self._rows.pop(name, None)
        if kept is None:
            return None
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return kept[1] if kept[0] == (st.st_ino, st.st_mtime_ns, st.st_size) else None

    def snapshot(self) -> dict[str, bytes]:
        """Every file of the store as one consistent set ({file name: bytes}), for a backup.

        Taken under the exclusive lock after finishing any interrupted commit, so it holds
        no half-done transaction, even while a server writes to the same store.
        """
        with self._mutex, self._locked(fcntl.LOCK_EX):
            self._recover()
            names = sorted(p.name for p in self.root.glob("*.json") if p.name != JOURNAL)
            return {name: (self.root / name).read_bytes() for name in names}

    def _commit(self, changed: dict[str, dict[str, Any]],
                meta: dict[str, Any] | None = None) -> None:
        """Write the changed collections (and meta.json) as one all-or-nothing step."""
        files = {n: self._document(d) for n, d in changed.items()}
        new = set(changed) - self._collections
        if new and meta is None:
            meta = self._read_meta()
        if meta is not None:
            meta = {**meta, "collections": sorted(set(meta.get("collections", ())) | new
                                                  | self._collections)}
            files[META] = meta
        if len(files) == 1:
            ((name, body),) = files.items()
            atomic_write(self._path(name), _encode(body))
        else:
            staged: dict[str, str] = {}
            try:
                for name, body in files.items():
                    staged[name] = stage(self._path(name), _encode(body)).name
                # The commit point: once the journal is on disk the commit happens.
                atomic_write(self.root / JOURNAL, _encode({"version": 2, "staged": staged}))
            except BaseException:
                for tmp in staged.values():
                    with contextlib.suppress(OSError):
                        os.unlink(self.root / tmp)
                raise
            try:
                self._apply_staged(staged)
            except OSError as exc:
                # Durable already; the next locked read or write finishes it (see _recover).
                log.error("commit recorded but not yet applied, will finish on next access: "
                          "%s", exc)
                for name in changed:
                    self._cache.pop(name, None)
                return
        if meta is not None:
            self._collections = set(meta["collections"])
        for name in changed:
            self._cache.pop(name, None)
            self._load(name)

    def _apply_staged(self, staged: dict[str, str]) -> None:
        """Rename the staged files of a committed journal into place, then drop the journal."""
        for name, tmp in staged.items():
            src = self.root / tmp
            if src.exists():
                fault_point()
                os.replace(src, self._path(name))
        fsync_dir(self.root)
        os.unlink(self.root / JOURNAL)
        fsync_dir(self.root)

    def _document(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"schema": self.schema_version, "data": data}

    def _read_meta(self) -> dict[str, Any]:
        path = self.root / "meta.json"
        try:
            meta = json.loads(path.read_bytes())
            int(meta["schema"])
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"reading {path}: {exc}; restore it from a backup") from None
        if not isinstance(meta.get("collections", []), list):
            raise StoreError(f"reading {path}: collections is not a list")
        return meta

    def _recover(self) -> None:
        """Finish a multi-file commit that a crash interrupted after its commit point."""
        journal = self.root / JOURNAL
        if not journal.exists():
            return
        try:
            doc = json.loads(journal.read_bytes())
        except ValueError:
            doc = None  # torn: the crash came before the commit point
        if isinstance(doc, dict) and doc.get("version") == 2:
            staged = doc.get("staged")
            if not isinstance(staged, dict) or not all(
                    isinstance(t, str) and t.startswith(".") and t.endswith(".tmp")
                    and "/" not in t for t in staged.values()):
                raise StoreError(f"{journal} is not a Nimbus journal; move it away and "
                                 "check the store with nimbus doctor")
            for name in staged:
                self._path(name)  # validates the collection name
            self._apply_staged(staged)
        else:
            self._recover_legacy(journal, doc)
        remove_stale_temps(self.root, all_writers=True)
        self._cache.clear()
        self._collections = set(self._read_meta().get("collections", ()))

    def _recover_legacy(self, journal: Path, doc: Any) -> None:
        """A journal written by an older Nimbus holds every file body and their checksum."""
        try:
            ok = doc["sha256"] in (hashlib.sha256(_encode(doc["files"])).hexdigest(),
                                   hashlib.sha256(_legacy_encode(doc["files"])).hexdigest())
        except (KeyError, TypeError):
            ok = False
        if ok:
            for name, body in doc["files"].items():
                atomic_write(self._path(name), _encode(body), sync_dir=False)
        os.unlink(journal)
        fsync_dir(self.root)

    def _migrate(self) -> None:
        meta_path = self.root / "meta.json"
        existing = sorted(p.stem for p in self.root.glob("*.json")
                          if p.name not in (JOURNAL, "meta.json"))
        meta = self._read_meta()
        if not meta:
            # No meta.json: a new store, or one written before meta.json existed (version 1).
            meta = {"schema": 1 if existing else self.schema_version}
        version = int(meta["schema"])
        if version > self.schema_version:
            raise StoreError(f"the store at {self.root} has schema {version}, newer than this "
                             f"Nimbus understands ({self.schema_version}); upgrade Nimbus")
        self._collections = set(meta.get("collections", ()))
        if version < self.schema_version:
            data = {n: copy.deepcopy(self._load(n, schema=version)) for n in existing}
            for v in range(version, self.schema_version):
                if v not in self._migrations:
                    raise StoreError(f"no migration from store schema {v} to {v + 1}")
                self._migrations[v](data)
            # The data and the new version land together, so a crash half-way never makes
            # the next start run a migration a second time on already migrated data.
            self._commit(data, meta={"schema": self.schema_version,
                                     "collections": sorted(set(existing) | set(data))})
        elif not meta_path.exists() or "collections" not in meta:
            # Record which collections exist, so a file that goes missing later is an error
            # instead of an empty collection (a store written before this knew no such list).
            meta = {"schema": version, "collections": existing}
            atomic_write(meta_path, _encode(meta))
            self._collections = set(existing)


def load_document(path: Path, schema: int) -> dict[str, Any]:
    """The data of one collection file, checked for shape and schema version."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise StoreError(f"reading store file {path}: {exc}; restore it from a backup") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise StoreError(f"reading store file {path}: not a Nimbus store document; "
                         "restore it from a backup")
    if doc.get("schema") != schema:
        raise StoreError(f"store file {path} has schema {doc.get('schema')!r} but the store "
                         f"is at schema {schema}; restore it from a backup")
    return doc["data"]
