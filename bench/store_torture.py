"""Store torture: SIGKILL a writer of two-file commits at random moments, check after each kill.

`python -m bench.store_torture [--kills 200] [--max-run 0.5]` prints how many kills, how many
acknowledged commits (reported by the writer after the commit returned), how many kills left
an interrupted commit behind (journal or staged files), and whether anything was lost or torn.
Not part of `python -m bench`: it measures durability, not speed. The figures in docs/store.md
come from here; tests/unit/test_store_crash.py is the same check in a shorter form.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import sys
import tempfile
import time
from pathlib import Path

from nimbus.store import Store, jsonstore
from tests.unit.test_store_crash import spawn_writer  # the test's writer, so the figures match


def _drain(rfd: int) -> list[int]:
    chunks = []
    while select.select([rfd], [], [], 0)[0]:
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return [int(x) for x in b"".join(chunks).split()]


def torture(root: Path, kills: int, max_run: float, seed: int) -> dict[str, int]:
    with Store(root).transaction("a", "b") as tx:
        tx["a"]["counter"] = 0
        tx["b"]["counter"] = 0
    rng = random.Random(seed)
    acknowledged = committed = interrupted = 0
    for i in range(kills):
        pid, rfd = spawn_writer(root)
        time.sleep(rng.uniform(0, max_run))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        reported = _drain(rfd)
        os.close(rfd)
        if reported:
            if reported != list(range(committed + 1, committed + 1 + len(reported))):
                raise SystemExit(f"kill {i}: acknowledged commits out of order: {reported}")
            committed = reported[-1]
            acknowledged += len(reported)
        interrupted += (root / jsonstore.JOURNAL).exists() or any(
            p.name.endswith(".tmp") for p in root.iterdir())
        store = Store(root)  # recovers, removes temp files
        a, b = store.read("a"), store.read("b")
        if a["counter"] != b["counter"] or b.get("twin", 0) != -b["counter"]:
            raise SystemExit(f"kill {i}: torn commit: {a['counter']} vs {b['counter']}")
        if a["counter"] not in (committed, committed + 1):
            raise SystemExit(f"kill {i}: lost an acknowledged commit: {a['counter']} < "
                             f"{committed}")
        committed = a["counter"]
        if (root / jsonstore.JOURNAL).exists() or any(
                p.name.endswith(".tmp") for p in root.iterdir()):
            raise SystemExit(f"kill {i}: recovery left a journal or temp file behind")
    return {"kills": kills, "acknowledged_commits": acknowledged, "final_counter": committed,
            "interrupted_commits": interrupted, "lost": 0, "torn": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--max-run", type=float, default=0.5,
                        help="the writer runs a random 0..S seconds before each kill")
    parser.add_argument("--seed", type=int, default=0x5EED)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nimbus-torture-") as tmp:
        started = time.monotonic()
        result = torture(Path(tmp) / "store", args.kills, args.max_run, args.seed)
        result["seconds"] = round(time.monotonic() - started)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
