"""kill -9 at random moments: the store always loads, consistent, at the previous or next state."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import time
from pathlib import Path

from nimbus.store import Store, jsonstore

KILLS = 200
PADDING = {f"item{i}": "x" * 64 for i in range(300)}  # makes each write take a while


def _writer(root: Path, wfd: int) -> None:
    """Child process: commit a+b with the same counter forever, reporting each commit."""
    store = Store(root)
    while True:
        with store.transaction("a", "b") as tx:
            n = tx["a"]["counter"] + 1
            tx["a"].update(counter=n, padding=PADDING)
            tx["b"].update(counter=n, twin=-n)
        os.write(wfd, f"{n}\n".encode())


def spawn_writer(root: Path) -> tuple[int, int]:
    """Fork a writer (also used by bench/store_torture.py); returns (pid, pipe of its commits)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            os.close(rfd)
            _writer(root, wfd)
        finally:
            os._exit(0)
    os.close(wfd)
    return pid, rfd


def _drain(rfd: int) -> list[int]:
    chunks = []
    while True:
        ready, _, _ = select.select([rfd], [], [], 0)
        if not ready:
            break
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return [int(x) for x in b"".join(chunks).split()]


def _check_files_parse(root: Path) -> None:
    """Every visible collection file is a whole JSON document (never torn or empty)."""
    for name in ("a.json", "b.json", "meta.json"):
        doc = json.loads((root / name).read_bytes())
        assert isinstance(doc, dict) and doc, name


def test_sigkill_at_random_moments_never_tears_the_store(tmp_path):
    root = tmp_path / "store"
    with Store(root).transaction("a", "b") as tx:
        tx["a"]["counter"] = 0
        tx["b"]["counter"] = 0
    rng = random.Random(0x5EED)
    committed = 0
    journals_seen = 0
    deadline = time.monotonic() + 240  # generous: other test suites share the CPUs
    for i in range(KILLS):
        assert time.monotonic() < deadline, f"only {i} kills in time"
        pid, rfd = spawn_writer(root)
        # Sometimes kill right away (while it opens the store), mostly mid-stream.
        time.sleep(rng.choice([0, rng.uniform(0, 0.004), rng.uniform(0.002, 0.03)]))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        reported = _drain(rfd)
        os.close(rfd)
        if reported:
            assert reported == list(range(committed + 1, committed + 1 + len(reported)))
            committed = reported[-1]
        journals_seen += (root / jsonstore.JOURNAL).exists()
        _check_files_parse(root)
        store = Store(root)  # recovers an interrupted commit, if any
        a, b = store.read("a"), store.read("b")
        assert a["counter"] == b["counter"], f"torn commit after kill {i}: {a} vs {b}"
        assert b["twin"] == -b["counter"] if "twin" in b else b["counter"] == 0
        # The last reported commit, or the one the writer finished but could not report.
        assert a["counter"] in (committed, committed + 1), (i, a["counter"], committed)
        committed = a["counter"]
        assert not (root / jsonstore.JOURNAL).exists()
    assert committed > 0
    print(f"{KILLS} kills, {committed} commits, {journals_seen} interrupted multi-file commits")
