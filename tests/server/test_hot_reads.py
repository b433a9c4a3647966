"""Store.read(max_age): the server's hot paths skip the os.stat per collection per request.
This process's commits show at once; another process's within max_age; a credential another
process has just created is found at once (a miss is looked up in the file again)."""

from __future__ import annotations

import time

from nimbus.store import HOT_READ_MAX_AGE_SEC, Store


def test_own_commits_show_at_once_with_max_age(tmp_path):
    store = Store(tmp_path / "s")
    with store.transaction("keys") as tx:
        tx["keys"]["a"] = {"v": 1}
    assert store.read("keys", 60.0) == {"a": {"v": 1}}
    with store.transaction("keys") as tx:
        tx["keys"]["a"] = {"v": 2}
    assert store.read("keys", 60.0) == {"a": {"v": 2}}  # no waiting out the 60 s


def test_another_processs_commit_shows_within_max_age(tmp_path, monkeypatch):
    store = Store(tmp_path / "s")
    with store.transaction("keys") as tx:
        tx["keys"]["a"] = {"v": 1}
    assert store.read("keys", 10.0) == {"a": {"v": 1}}  # checked against the file now
    with Store(tmp_path / "s").transaction("keys") as tx:  # another process
        tx["keys"].pop("a")
    assert store.read("keys", 10.0) == {"a": {"v": 1}}  # within the bound: not re-checked
    assert store.read("keys") == {}  # without max_age: always the file's
    with Store(tmp_path / "s").transaction("keys") as tx:
        tx["keys"]["b"] = {"v": 1}
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 10.1)
    assert store.read("keys", 10.0) == {"b": {"v": 1}}  # past the bound: the file again


def test_credentials_made_by_another_process_work_at_once(inproc):
    """A hot-path miss reads the file again: `nimbus bootstrap` or a second server on the
    same data dir creating a key must not be refused for HOT_READ_MAX_AGE_SEC."""
    state = inproc.state
    assert state.store.read("keys", HOT_READ_MAX_AGE_SEC) == {}  # cached, just checked
    with Store(state.store.root).transaction("keys") as tx:
        tx["keys"]["AKEXAMPLE"] = {"user_id": "u1"}
    assert state.store.lookup("keys", "AKEXAMPLE", HOT_READ_MAX_AGE_SEC) == {"user_id": "u1"}
    assert state.store.lookup("keys", "AKOTHER", HOT_READ_MAX_AGE_SEC) is None
