"""Store: atomic, durable, private, process-safe JSON collections with schema migrations."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nimbus.errors import DiskFull, StoreError
from nimbus.store import SCHEMA_VERSION, Store, jsonstore
from nimbus.store.files import atomic_write, unsafe_permissions

REPO = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_transaction_commits_and_a_new_instance_reads_it(tmp_path):
    store = Store(tmp_path / "s")
    with store.transaction("users") as tx:
        tx["users"]["u1"] = {"name": "ada"}
    assert store.read("users") == {"u1": {"name": "ada"}}
    assert Store(tmp_path / "s").read("users") == {"u1": {"name": "ada"}}
    doc = json.loads((tmp_path / "s" / "users.json").read_text())
    assert doc == {"schema": SCHEMA_VERSION, "data": {"u1": {"name": "ada"}}}


def test_missing_collection_reads_empty(tmp_path):
    assert Store(tmp_path / "s").read("nothing") == {}


def test_files_are_private(tmp_path):
    os.umask(0o022)
    store = Store(tmp_path / "s")
    with store.transaction("a", "b") as tx:
        tx["a"]["x"] = 1
        tx["b"]["y"] = 2
    assert mode(tmp_path / "s") == 0o700
    for path in (tmp_path / "s").iterdir():
        if path.is_file():
            assert mode(path) == 0o600, path


def test_private_dir_is_tightened_when_it_already_exists(tmp_path):
    (tmp_path / "s").mkdir(mode=0o755)
    os.chmod(tmp_path / "s", 0o755)  # noqa: S103 - the unsafe mode under test
    Store(tmp_path / "s")
    assert mode(tmp_path / "s") == 0o700


def test_exception_in_transaction_changes_nothing(tmp_path):
    store = Store(tmp_path / "s")
    with store.transaction("c") as tx:
        tx["c"]["n"] = 1
    with pytest.raises(RuntimeError), store.transaction("c") as tx:
        tx["c"]["n"] = 2
        raise RuntimeError("boom")
    assert store.read("c") == {"n": 1}
    assert Store(tmp_path / "s").read("c") == {"n": 1}


def test_unchanged_transaction_does_not_rewrite(tmp_path):
    store = Store(tmp_path / "s")
    with store.transaction("c") as tx:
        tx["c"]["n"] = 1
    before = (tmp_path / "s" / "c.json").stat().st_ino
    with store.transaction("c") as tx:
        tx["c"]["n"] = 1
    assert (tmp_path / "s" / "c.json").stat().st_ino == before


def test_readers_get_snapshots_unaffected_by_a_transaction_in_progress(tmp_path):
    store = Store(tmp_path / "s")
    with store.transaction("c") as tx:
        tx["c"]["n"] = 1
    snapshot = store.read("c")
    with store.transaction("c") as tx:
        tx["c"]["n"] = 2
        assert snapshot == {"n": 1}
    assert store.read("c") == {"n": 2}


def test_invalid_collection_names_are_refused(tmp_path):
    store = Store(tmp_path / "s")
    for bad in ("../x", "a/b", "", "a.b"):
        with pytest.raises(StoreError):
            store.read(bad)


def test_no_temporary_files_are_left_behind(tmp_path):
    store = Store(tmp_path / "s")
    for i in range(5):
        with store.transaction("a", "b") as tx:
            tx["a"]["i"] = i
            tx["b"]["i"] = i
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["a.json", "b.json", "meta.json", "store.lock"]


def test_a_corrupt_file_is_a_clear_error(tmp_path):
    store = Store(tmp_path / "s")
    (tmp_path / "s" / "bad.json").write_text("{not json")
    with pytest.raises(StoreError, match=r"bad\.json"):
        store.read("bad")
    (tmp_path / "s" / "list.json").write_text("[1, 2]")
    with pytest.raises(StoreError, match="not a Nimbus store document"):
        store.read("list")


def test_changes_by_another_process_are_seen(tmp_path):
    store = Store(tmp_path / "s")
    assert store.read("c") == {}
    with Store(tmp_path / "s").transaction("c") as tx:
        tx["c"]["from"] = "other"
    assert store.read("c") == {"from": "other"}


# -- durability ------------------------------------------------------------------------

def test_atomic_write_fsyncs_file_before_rename_and_dir_after(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "f.json"
    atomic_write(target, b"{}")
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"]
    assert events[0][1].endswith(".tmp")  # the data, before it becomes visible
    assert events[1][1] == str(target)
    assert events[2][1] == str(tmp_path)  # the directory entry of the rename
    assert mode(target) == 0o600


def test_commit_syncs_the_directory_and_every_file(tmp_path, monkeypatch):
    store = Store(tmp_path / "s")
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd)))
    with store.transaction("a", "b") as tx:
        tx["a"]["x"] = 1
        tx["b"]["x"] = 1
    assert any(n.startswith("._journal.json") for n in synced)
    assert any(n.startswith(".a.json") for n in synced)
    assert any(n.startswith(".b.json") for n in synced)
    assert synced[-1] == "s"  # the journal's removal and the renames are durable


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write(target, b"old")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(DiskFull, match=f"the disk holding {tmp_path} is full"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_unsafe_permissions_names_the_fix(tmp_path):
    secret = tmp_path / "ca.key"
    secret.write_text("x")
    os.chmod(secret, 0o644)
    (problem,) = unsafe_permissions([secret, tmp_path / "missing"])
    assert "chmod 600" in problem and str(secret) in problem


# -- concurrency -----------------------------------------------------------------------

COUNTER_SCRIPT = """
import sys
from pathlib import Path
from nimbus.store import Store
store = Store(Path(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    with store.transaction("counter", "log") as tx:
        n = tx["counter"].get("n", 0) + 1
        tx["counter"]["n"] = n
        tx["log"][str(n)] = sys.argv[3]
"""


def test_two_processes_incrementing_lose_no_update(tmp_path):
    n = 60
    procs = [subprocess.Popen([sys.executable, "-c", COUNTER_SCRIPT, str(tmp_path / "s"),
                               str(n), name], cwd=REPO)
             for name in ("p1", "p2")]
    for p in procs:
        assert p.wait(timeout=120) == 0
    store = Store(tmp_path / "s")
    assert store.read("counter") == {"n": 2 * n}
    log = store.read("log")
    assert sorted(int(k) for k in log) == list(range(1, 2 * n + 1))
    assert sorted(log.values()).count("p1") == n


def test_threads_incrementing_lose_no_update(tmp_path):
    store = Store(tmp_path / "s")

    def work():
        for _ in range(25):
            with store.transaction("counter") as tx:
                tx["counter"]["n"] = tx["counter"].get("n", 0) + 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert store.read("counter") == {"n": 100}


def test_reading_inside_a_transaction_does_not_deadlock(tmp_path):
    store = Store(tmp_path / "s")
    with Store(tmp_path / "s").transaction("other") as tx:
        tx["other"]["x"] = 1
    result: list[object] = []

    def work():
        with store.transaction("c") as tx:
            tx["c"]["seen"] = store.read("other").get("x")
        result.append(store.read("c"))

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout=20)
    assert result == [{"seen": 1}], "a read inside a transaction hung"


def test_nested_transaction_is_refused_not_deadlocked(tmp_path):
    store = Store(tmp_path / "s")
    outcome: list[object] = []

    def work():
        try:
            with store.transaction("a") as tx, store.transaction("b"):
                tx["a"]["x"] = 1
        except StoreError as exc:
            outcome.append(exc)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout=20)
    assert len(outcome) == 1 and "nested" in str(outcome[0])
    assert store.read("a") == {}


# -- schema and migrations ---------------------------------------------------------------

def test_new_store_records_its_schema_version(tmp_path):
    Store(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta == {"schema": SCHEMA_VERSION, "collections": []}
    assert mode(tmp_path / "s" / "meta.json") == 0o600


def _v1_store(root: Path) -> None:
    store = Store(root, migrations={}, schema_version=1)
    with store.transaction("users", "keys") as tx:
        tx["users"]["u1"] = {"name": "Ada"}
        tx["users"]["u2"] = {"name": "Bob"}
        tx["keys"]["k1"] = {"user": "u1"}


def _to_v2(data):
    for user in data["users"].values():
        user["username"] = user.pop("name").lower()
    data["settings"] = {"migrated": True}


def test_migration_rewrites_data_and_meta(tmp_path):
    root = tmp_path / "s"
    _v1_store(root)
    store = Store(root, migrations={1: _to_v2}, schema_version=2)
    assert store.read("users") == {"u1": {"username": "ada"}, "u2": {"username": "bob"}}
    assert store.read("keys") == {"k1": {"user": "u1"}}
    assert store.read("settings") == {"migrated": True}
    assert json.loads((root / "meta.json").read_text()) == {
        "schema": 2, "collections": ["keys", "settings", "users"]}
    for name in ("users", "keys", "settings"):
        assert json.loads((root / f"{name}.json").read_text())["schema"] == 2
    assert not (root / jsonstore.JOURNAL).exists()
    # Opening again does not migrate twice.
    calls = []
    Store(root, migrations={1: lambda d: calls.append(d)}, schema_version=2)
    assert calls == []


def test_migration_runs_every_step_in_order(tmp_path):
    root = tmp_path / "s"
    _v1_store(root)
    steps: list[int] = []
    migrations = {1: lambda d: steps.append(1), 2: lambda d: steps.append(2)}
    Store(root, migrations=migrations, schema_version=3)
    assert steps == [1, 2]
    assert json.loads((root / "meta.json").read_text())["schema"] == 3


def _crash_on_rename_to(monkeypatch, target: str) -> None:
    """Simulate a crash (an exception nothing catches) when a file is renamed onto target."""
    real = os.replace

    def replace(src, dst):
        if Path(dst).name == target:
            raise KeyboardInterrupt("simulated crash")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_migration_and_meta_commit_together(tmp_path, monkeypatch):
    """A crash between the data and meta.json must not make the next start migrate twice."""
    root = tmp_path / "s"
    _v1_store(root)
    _crash_on_rename_to(monkeypatch, "users.json")  # after the journal, before every file
    with pytest.raises(KeyboardInterrupt):
        Store(root, migrations={1: _to_v2}, schema_version=2)
    monkeypatch.undo()
    assert (root / jsonstore.JOURNAL).exists()
    calls = []
    store = Store(root, migrations={1: lambda d: (calls.append(1), _to_v2(d))},
                  schema_version=2)
    assert calls == []  # the journal finished the migration, meta included
    assert store.read("users") == {"u1": {"username": "ada"}, "u2": {"username": "bob"}}
    assert not [p.name for p in root.iterdir() if p.name.endswith(".tmp")]


def test_store_without_meta_is_treated_as_version_1(tmp_path):
    root = tmp_path / "s"
    _v1_store(root)
    (root / "meta.json").unlink()
    steps = []
    Store(root, migrations={1: lambda d: steps.append(sorted(d))}, schema_version=2)
    assert steps == [["keys", "users"]]


def test_newer_store_is_refused_with_a_clear_error(tmp_path):
    root = tmp_path / "s"
    Store(root, migrations={}, schema_version=3)
    with pytest.raises(StoreError, match=r"schema 3, newer than .*\(1\); upgrade Nimbus"):
        Store(root)
    # Refusing must not have touched the store.
    assert json.loads((root / "meta.json").read_text())["schema"] == 3


def test_unreadable_meta_is_a_clear_error(tmp_path):
    root = tmp_path / "s"
    Store(root)
    (root / "meta.json").write_text("garbage")
    with pytest.raises(StoreError, match=r"meta\.json"):
        Store(root)


# -- journal recovery --------------------------------------------------------------------

def _journal(root: Path, files: dict[str, dict]) -> None:
    body = {n: {"schema": SCHEMA_VERSION, "data": d} for n, d in files.items()}
    payload = json.dumps(body, indent=1, sort_keys=True).encode()
    doc = {"sha256": hashlib.sha256(payload).hexdigest(), "files": body}
    (root / jsonstore.JOURNAL).write_text(json.dumps(doc))


def _two_collections(root: Path, n: int) -> Store:
    store = Store(root)
    with store.transaction("a", "b") as tx:
        tx["a"]["n"] = n
        tx["b"]["n"] = n
    return store


def test_complete_journal_is_replayed_on_open(tmp_path):
    root = tmp_path / "s"
    _two_collections(root, 1)
    _journal(root, {"a": {"n": 2}, "b": {"n": 2}})
    store = Store(root)
    assert store.read("a") == {"n": 2} and store.read("b") == {"n": 2}
    assert not (root / jsonstore.JOURNAL).exists()


def test_journal_is_replayed_by_a_reader_of_an_open_store(tmp_path):
    root = tmp_path / "s"
    store = _two_collections(root, 1)
    (root / "a.json").write_text(json.dumps({"schema": 1, "data": {"n": 2}}))  # half done
    _journal(root, {"a": {"n": 2}, "b": {"n": 2}})
    # Reading the half-written collection finds the journal and finishes the commit first.
    assert store.read("a") == {"n": 2}
    assert store.read("b") == {"n": 2}
    assert not (root / jsonstore.JOURNAL).exists()


def test_torn_or_forged_journal_is_discarded(tmp_path):
    root = tmp_path / "s"
    _two_collections(root, 1)
    _journal(root, {"a": {"n": 2}, "b": {"n": 2}})
    doc = json.loads((root / jsonstore.JOURNAL).read_text())
    doc["files"]["b"]["data"]["n"] = 3  # checksum no longer matches
    (root / jsonstore.JOURNAL).write_text(json.dumps(doc))
    store = Store(root)
    assert store.read("a") == {"n": 1} and store.read("b") == {"n": 1}
    (root / jsonstore.JOURNAL).write_text('{"sha256": "ab", "fil')
    store = Store(root)
    assert store.read("a") == {"n": 1} and not (root / jsonstore.JOURNAL).exists()


def test_crash_after_the_commit_point_is_completed(tmp_path, monkeypatch):
    root = tmp_path / "s"
    store = _two_collections(root, 1)
    _crash_on_rename_to(monkeypatch, "b.json")
    with pytest.raises(KeyboardInterrupt), store.transaction("a", "b") as tx:
        tx["a"]["n"] = 2
        tx["b"]["n"] = 2
    monkeypatch.undo()
    assert json.loads((root / "a.json").read_text())["data"] == {"n": 2}
    assert json.loads((root / "b.json").read_text())["data"] == {"n": 1}  # torn on disk…
    fresh = Store(root)
    assert fresh.read("a") == {"n": 2} and fresh.read("b") == {"n": 2}  # …but never seen


def test_crash_before_the_commit_point_is_rolled_back(tmp_path, monkeypatch):
    root = tmp_path / "s"
    store = _two_collections(root, 1)
    _crash_on_rename_to(monkeypatch, jsonstore.JOURNAL)
    with pytest.raises(KeyboardInterrupt), store.transaction("a", "b") as tx:
        tx["a"]["n"] = 2
        tx["b"]["n"] = 2
    monkeypatch.undo()
    fresh = Store(root)
    assert fresh.read("a") == {"n": 1} and fresh.read("b") == {"n": 1}
    assert sorted(p.name for p in root.iterdir()) == ["a.json", "b.json", "meta.json",
                                                      "store.lock"]


def _full_disk_on(monkeypatch, fragment: str) -> None:
    """os.write fails with ENOSPC for files whose name contains fragment."""
    real = os.write

    def write(fd, data):
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("fails", [".b.json", "._journal.json"])
def test_full_disk_mid_commit_changes_nothing_now_or_later(tmp_path, monkeypatch, fails):
    """The old journal replayed a commit the client was told had failed: never again."""
    root = tmp_path / "s"
    store = _two_collections(root, 1)
    _full_disk_on(monkeypatch, fails)
    with pytest.raises(DiskFull, match=f"the disk holding {root} is full"), \
            store.transaction("a", "b") as tx:
        del tx["a"]["n"]
        tx["b"]["n"] = 2
    # Reads keep working while the disk is still full.
    assert store.read("a") == {"n": 1} and store.read("b") == {"n": 1}
    monkeypatch.undo()
    assert sorted(p.name for p in root.iterdir()) == ["a.json", "b.json", "meta.json",
                                                      "store.lock"]
    fresh = Store(root)  # nothing to replay once space is back
    assert fresh.read("a") == {"n": 1} and fresh.read("b") == {"n": 1}
    with fresh.transaction("a") as tx:
        tx["a"]["n"] = 3
    assert Store(root).read("a") == {"n": 3}


def test_temp_files_of_interrupted_writes_are_removed_on_open(tmp_path):
    root = tmp_path / "s"
    _two_collections(root, 1)
    for name in (".a.json.999999.tmp", ".b.json.4242.w1a2b3c4d.tmp"):
        (root / name).write_bytes(b"x" * 1_200_000)
    Store(root)
    assert not [p.name for p in root.iterdir() if p.name.endswith(".tmp")]


def test_a_file_of_another_schema_is_a_clear_error(tmp_path):
    root = tmp_path / "s"
    _two_collections(root, 1)
    (root / "a.json").write_text(json.dumps({"schema": 7, "data": {"n": 1}}))
    with pytest.raises(StoreError, match=r"a\.json has schema 7 but the store is at schema 1"):
        Store(root).read("a")


def test_a_missing_collection_file_is_an_error_not_empty(tmp_path):
    root = tmp_path / "s"
    _two_collections(root, 1)
    (root / "a.json").unlink()
    with pytest.raises(StoreError, match=r"a\.json is missing.*restore it from a backup"):
        Store(root).read("a")
    assert Store(root).read("never_written") == {}


def test_a_store_without_the_collection_list_learns_it_on_open(tmp_path):
    root = tmp_path / "s"
    _two_collections(root, 1)
    (root / "meta.json").write_text(json.dumps({"schema": 1}))
    Store(root)
    assert json.loads((root / "meta.json").read_text())["collections"] == ["a", "b"]


def test_new_collections_are_recorded_by_replace_and_transaction(tmp_path):
    root = tmp_path / "s"
    store = Store(root)
    store.replace("hot", {"x": 1})
    with store.transaction("cold") as tx:
        tx["cold"]["y"] = 2
    assert json.loads((root / "meta.json").read_text())["collections"] == ["cold", "hot"]
    store.replace("hot", {"x": 2})
    assert Store(root).read("hot") == {"x": 2}


def test_a_forged_journal_cannot_rename_files_from_elsewhere(tmp_path):
    root = tmp_path / "s"
    _two_collections(root, 1)
    (tmp_path / "evil.tmp").write_text("{}")
    (root / jsonstore.JOURNAL).write_text(json.dumps(
        {"version": 2, "staged": {"a": "../evil.tmp"}}))
    with pytest.raises(StoreError, match="not a Nimbus journal"):
        Store(root)
    assert json.loads((root / "a.json").read_text())["data"] == {"n": 1}
