"""Benchmark 6: 10,000 nodes persisted; how long loading them at start-up takes."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.common import REPO, Result, median, seed_nodes, workdir

NODES = 10_000
# Runs in a fresh interpreter, as `nimbus serve` would at start-up (imports not counted).
LOAD = """
import json, sys, time
from nimbus.store import Store
t0 = time.perf_counter()
store = Store(sys.argv[1])
counts = {n: len(store.read(n)) for n in ("nodes", "runtime", "tasks", "revoked", "users")}
load = time.perf_counter() - t0
t0 = time.perf_counter()
with store.transaction("nodes") as tx:
    node = next(iter(tx["nodes"].values()))
    node["name"] = node["name"] + "x"
commit = time.perf_counter() - t0
print(json.dumps({"load": load, "commit": commit, "counts": counts}))
"""


def run(quick: bool, log: Any) -> list[Result]:
    runs = 3 if quick else 7
    with workdir("store") as tmp:
        seed_nodes(tmp, NODES)
        sizes = {p.name: p.stat().st_size for p in (tmp / "store").glob("*.json")}
        samples = []
        for _ in range(runs):
            out = subprocess.run([sys.executable, "-c", LOAD, str(tmp / "store")], cwd=REPO,
                                 capture_output=True, text=True, check=True)
            samples.append(json.loads(out.stdout))
    load = median([s["load"] for s in samples])
    commit = median([s["commit"] for s in samples])
    log(f"  load {load * 1000:.0f} ms, one-node commit {commit * 1000:.0f} ms, sizes {sizes}")
    return [
        Result("store load at start-up, 10,000 nodes", round(load, 3), "s", 1.0, "<=",
               {"runs": [round(s["load"], 4) for s in samples], "file_bytes": sizes,
                "counts": samples[0]["counts"]},
               note=f"median of {runs} fresh processes; "
                    f"nodes.json {sizes.get('nodes.json', 0) // 1024} KiB"),
        Result("store commit of one node change, 10,000 nodes", round(commit, 3), "s", None,
               {"runs": [round(s["commit"], 4) for s in samples]},
               note="copy-on-write transaction: deep copy, compare, encode, fsync, rename"),
    ]
