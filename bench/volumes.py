"""NFS volumes on a real lab (root): `volume create` to `ready`, and an 8 MiB file written
and read over the overlay from another member's namespace with libnfs.

    sudo .venv/bin/python -m bench --only volumes        (not part of --quick: ~1.5 minutes)

The write goes through libnfs's own nfs_pwrite in 3,900-byte chunks (tests/e2e/libnfs.py:
Debian 12's nfs-cp cannot write more over NFSv4), each one a synchronous round trip over
WireGuard (wireguard-go in the lab), so it measures latency as much as bandwidth; the read
is `nfs-cat`. Every figure is the median of REPEAT runs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Result, wait_until
from nimbus.lab.netns import new_lab_id
from nimbus.lab.orchestrate import Lab, all_labs

HELPER = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "libnfs.py"
SIZE = 8 * 1024 * 1024
REPEAT = 3


def _url(vol: dict[str, Any], file: str) -> str:
    return f"nfs://{vol['server_ip']}{vol['export_path']}/{file}?version=4"


def _copy(lab: Lab, ns: str, vol: dict[str, Any], src: Path, i: int) -> tuple[float, float]:
    """(write seconds, read seconds) of one 8 MiB round."""
    wrote = lab.runner.run([sys.executable, str(HELPER), "write", _url(vol, f"b{i}"), str(src)],
                           netns=ns, timeout=120)
    t = time.perf_counter()
    read = subprocess.run(["ip", "netns", "exec", ns, "nfs-cat", _url(vol, f"b{i}")],
                          capture_output=True, timeout=120, check=False)
    took = time.perf_counter() - t
    if read.returncode != 0 or read.stdout != src.read_bytes():
        raise RuntimeError(f"nfs-cat returned other bytes than were written: {read.stderr!r}")
    return float(wrote.stdout.split()[1]), took


def measure(log: Callable[[str], None]) -> dict[str, float]:
    lab = Lab(next(i for i in iter(new_lab_id, None) if i not in all_labs()))
    tmp = Path(tempfile.mkdtemp(prefix="nimbus-bench-volumes-"))
    src = tmp / "big.bin"
    src.write_bytes(os.urandom(SIZE))
    ready, writes, reads = [], [], []
    try:
        lab.up(2, echo=log, docker=True)
        lab.cli_json("swarm", "create", "--name", "bench")
        for n in (1, 2):
            lab.cli_json("swarm", "add-node", "--swarm", "bench", "--node", f"n{n}")
        for i in range(REPEAT):
            t = time.monotonic()
            lab.cli_json("volume", "create", "--name", f"b{i}", "--node", "n1", "--swarm",
                         "bench")
            if not wait_until(lambda i=i: lab.cli_json("volume", "describe", f"b{i}")["status"]
                              == "ready", 60, every=0.1):
                raise RuntimeError("the volume was not ready within 60 s")
            ready.append(time.monotonic() - t)
        vol = lab.cli_json("volume", "describe", "b0")
        for i in range(REPEAT):
            w, r = _copy(lab, lab.net.netns("2"), vol, src, i)
            writes.append(w)
            reads.append(r)
    finally:
        lab.down()
        shutil.rmtree(tmp, ignore_errors=True)
    mb = SIZE / 1e6
    return {"create_to_ready_s": statistics.median(ready),
            "write_8mib_mb_s": mb / statistics.median(writes),
            "read_8mib_mb_s": mb / statistics.median(reads)}


def run(quick: bool, log: Any) -> list[Result]:
    missing = [t for t in ("dockerd", "ganesha.nfsd", "nfs-cat") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        return [Result("volumes: skipped", None, "", None,
                       note="needs root, docker.io, nfs-ganesha(-vfs) and libnfs-utils")]
    res = measure(log)
    return [
        Result("volumes: create to ready", round(res["create_to_ready_s"], 2), "s", 5.0,
               details={"repeat": REPEAT}),
        Result("volumes: 8 MiB write over the overlay", round(res["write_8mib_mb_s"], 1),
               "MB/s", 1.0, op=">=", details={"chunk_bytes": 3900, "repeat": REPEAT}),
        Result("volumes: 8 MiB read over the overlay", round(res["read_8mib_mb_s"], 1),
               "MB/s", 1.0, op=">=", details={"repeat": REPEAT}),
    ]
