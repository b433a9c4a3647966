"""Docker Swarm on a real lab (root): how long until a 3-node swarm is formed and a
3-replica stack runs, the logs round trip (`service logs` to its first line, and how late
`--follow` prints a line after the container wrote it), and how long `node delete` takes
to reach the swarm.

    sudo .venv/bin/python -m bench --only swarm        (not part of --quick: ~2 minutes)

Drives `nimbus lab up --docker` in-process and the real CLI inside the lab, exactly as the
end-to-end test does; polls are ~1 s apart (one CLI call), which bounds the resolution.
"""

from __future__ import annotations

import calendar
import os
import shutil
import signal
import statistics
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
TICKER = """\
services:
  ticker:
    image: nimbus-lab/busybox:latest
    command: ["sh", "-c", "while true; do echo tick; sleep 1; done"]
    deploy: {replicas: 1, endpoint_mode: dnsrr}
"""
FOLLOWED_LINES = 8


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
        (tmp / "ticker.yml").write_text(TICKER)
        lab.cli_json("service", "deploy", "--swarm", "bench", "--file", str(tmp / "ticker.yml"),
                     "--name", "ticks")
        res.update(logs_round_trip(lab))
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


def logs_round_trip(lab: Lab) -> dict[str, float]:
    """`service logs --tail 1` start to exit (a whole CLI command: open, one manager
    round, read), and the median delay between a line's Docker timestamp and `--follow`
    printing it (the lab shares one clock)."""
    wait_until(lambda: "tick" in lab.cli(["service", "logs", "ticks", "--tail", "1"]).stdout,
               60, every=0.5)
    firsts = []
    for _ in range(3):
        t = time.monotonic()
        lab.cli(["service", "logs", "ticks", "--tail", "1"])
        firsts.append(time.monotonic() - t)
    argv, env = lab.cli_argv(["service", "logs", "ticks", "--follow",
                              "--tail", "0", "--timestamps"])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env, start_new_session=True)
    delays = []
    try:
        assert proc.stdout is not None
        while len(delays) < FOLLOWED_LINES:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("service logs --follow ended")
            delays.append(time.time() - _stamp(line.split(" ", 1)[0]))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    return {"logs_first_line_s": statistics.median(firsts),
            "logs_follow_delay_median_s": statistics.median(delays),
            "logs_follow_delay_max_s": max(delays)}


def _stamp(text: str) -> float:
    """Docker's RFC 3339 nano time (UTC) as unix seconds."""
    date, _, frac = text.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(date, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{frac or 0}")


def run(quick: bool, log: Any) -> list[Result]:
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        return [Result("swarm: skipped", None, "", None,
                       note="needs root and docker.io (nimbus lab --docker)")]
    res = measure(log)
    budgets = {"swarm_formed_s": 60.0, "stack_3_of_3_running_s": 60.0,
               "node_delete_to_swarm_removal_s": 10.0, "logs_first_line_s": 5.0,
               "logs_follow_delay_median_s": 4.0}
    return [Result(f"swarm: {key.removesuffix('_s').replace('_', ' ')}", round(value, 2), "s",
                   budgets.get(key), details={"nodes": NODES}) for key, value in res.items()]
