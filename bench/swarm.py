"""Docker Swarm on a real lab (root): how long until a 3-node swarm is formed and a
3-replica stack runs, and how long `node delete` takes to reach the swarm.

    sudo .venv/bin/python -m bench --only swarm        (not part of --quick: ~2 minutes)

Drives `nimbus lab up --docker` in-process and the real CLI inside the lab, exactly as the
end-to-end test does; polls are ~1 s apart (one CLI call), which bounds the resolution.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Result, wait_until
from nimbus.lab.netns import new_lab_id
from nimbus.lab.orchestrate import Lab, all_labs

NODES = 3
COMPOSE = """\
services:
  web:
    image: nimbus-lab/busybox:latest
    command: ["httpd", "-f", "-p", "80"]
    deploy:
      replicas: 3
      endpoint_mode: dnsrr
      placement: {max_replicas_per_node: 1}
"""


def measure(log: Callable[[str], None]) -> dict[str, float]:
    lab = Lab(next(i for i in iter(new_lab_id, None) if i not in all_labs()))
    res: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="nimbus-bench-swarm-"))
    try:
        t = time.monotonic()
        lab.up(NODES, echo=log, docker=True)
        res["lab_up_docker_s"] = time.monotonic() - t
        t = time.monotonic()
        lab.cli_json("swarm", "create", "--name", "bench")
        for n in range(1, NODES + 1):
            lab.cli_json("swarm", "add-node", "--swarm", "bench", "--node", f"n{n}")
        res["swarm_formed_s"] = time.monotonic() - t
        (tmp / "compose.yml").write_text(COMPOSE)
        t = time.monotonic()
        lab.cli_json("service", "deploy", "--swarm", "bench", "--file",
                     str(tmp / "compose.yml"), "--name", "bench")
        if not wait_until(lambda: lab.cli_json("service", "describe", "bench")["running"] == 3,
                          180, every=0.5):
            raise RuntimeError("the stack did not reach 3/3 running in 180 s")
        res["stack_3_of_3_running_s"] = time.monotonic() - t
        victim = next(m for m in lab.cli_json("swarm", "describe", "bench")["nodes"]
                      if m["name"] == f"n{NODES}")
        host = lab.docker_host("1")
        t = time.monotonic()
        lab.cli_json("node", "delete", victim["node_id"])

        def gone() -> bool:
            out = subprocess.run(["docker", "--host", host, "node", "ls", "--format",
                                  "{{.ID}}"], capture_output=True, text=True, check=False)
            return victim["swarm_node_id"] not in out.stdout.split()

        if not wait_until(gone, 60, every=0.2):
            raise RuntimeError("the deleted node stayed in the swarm for 60 s")
        res["node_delete_to_swarm_removal_s"] = time.monotonic() - t
        t = time.monotonic()
        lab.cli_json("swarm", "delete", "bench")
        res["swarm_delete_s"] = time.monotonic() - t
    finally:
        lab.down()
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def run(quick: bool, log: Any) -> list[Result]:
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        return [Result("swarm: skipped", None, "", None,
                       note="needs root and docker.io (nimbus lab --docker)")]
    res = measure(log)
    budgets = {"swarm_formed_s": 60.0, "stack_3_of_3_running_s": 60.0,
               "node_delete_to_swarm_removal_s": 10.0}
    return [Result(f"swarm: {key.removesuffix('_s').replace('_', ' ')}", round(value, 2), "s",
                   budgets.get(key), details={"nodes": NODES}) for key, value in res.items()]
