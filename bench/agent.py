"""Benchmarks 4 and 5: `nimbus agent --join` to a ready node, and the idle agent's footprint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    PYZ,
    Result,
    admin_client,
    admin_for,
    cpu_seconds,
    median,
    rss_mb,
    start_server,
    workdir,
)

SYSTEM_PYTHON = "/usr/bin/python3"


def _argv() -> tuple[list[str], str]:
    if PYZ.exists():
        interp = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable
        return [interp, str(PYZ)], "dist/nimbus.pyz"
    return [sys.executable, "-m", "nimbus"], "python -m nimbus"


def _join_once(base: list[str], env: dict[str, str], admin: Any, data_dir: Path,
               i: int) -> tuple[subprocess.Popen[bytes], dict[str, float]]:
    made = admin.request("POST", "/v1/nodes", {"ip_address": f"192.0.2.{i + 1}",
                                               "name": f"bench-agent-{i}"})
    node_id = made["node"]["id"]
    log = open(data_dir.parent / f"agent-{i}.log", "wb")  # noqa: SIM115 - lives with the process
    t0 = time.perf_counter()
    proc = subprocess.Popen([*base, "agent", "--join", "--token-file", "-", "--no-wireguard",
                             "--data-dir", str(data_dir)], stdin=subprocess.PIPE, stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    assert proc.stdin is not None
    proc.stdin.write(made["join_token"].encode() + b"\n")
    proc.stdin.close()
    ready = first_hb = None
    deadline = t0 + 30
    while time.perf_counter() < deadline and first_hb is None:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited {proc.returncode}: "
                               f"{(data_dir.parent / f'agent-{i}.log').read_text()[-400:]}")
        node = admin.request("GET", f"/v1/nodes/{node_id}")
        now = time.perf_counter() - t0
        if ready is None and node["status"] == "ready":
            ready = now
        if node.get("cpu") is not None:  # metrics arrive with the first heartbeat
            first_hb = now
        time.sleep(0.005)
    if ready is None:
        raise RuntimeError("the node did not become ready within 30 s")
    return proc, {"ready": ready, "first_heartbeat": first_hb or float("nan")}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(quick: bool, log: Any) -> list[Result]:
    joins = 2 if quick else 5
    window = 10 if quick else 60
    base, what = _argv()
    with workdir("agent") as tmp:
        server = start_server(tmp, {"heartbeat_interval_sec": 10})
        procs: list[subprocess.Popen[bytes]] = []
        try:
            cli, conn = admin_for(server, tmp)
            admin = admin_client(server, conn)
            env = {**cli.env, "SHIV_ROOT": str(tmp / "shiv")}
            if PYZ.exists():
                env.pop("PYTHONPATH", None)
                subprocess.run([*base, "--help"], env=env, capture_output=True, check=True)
            samples = []
            for i in range(joins):
                proc, times = _join_once(base, env, admin, tmp / f"agent{i}", i)
                procs.append(proc)
                samples.append(times)
                log(f"  join {i}: ready after {times['ready'] * 1000:.0f} ms, first heartbeat "
                    f"{times['first_heartbeat'] * 1000:.0f} ms")
            for proc in procs[:-1]:
                _stop(proc)
            idle = procs[-1]
            time.sleep(2)
            cpu0, t0 = cpu_seconds(idle.pid), time.monotonic()
            time.sleep(window)
            cpu = cpu_seconds(idle.pid) - cpu0
            elapsed = time.monotonic() - t0
            rss = rss_mb(idle.pid)
            threads = len(os.listdir(f"/proc/{idle.pid}/task"))
            admin.close()
        finally:
            for proc in procs:
                _stop(proc)
            server.stop()
    ready = median([s["ready"] for s in samples])
    cpu_pct = cpu / elapsed * 100
    log(f"  idle agent: RSS {rss:.1f} MB, CPU {cpu_pct:.2f}% over {elapsed:.0f} s, "
        f"{threads} threads")
    return [
        Result("join: `nimbus agent --join` start -> node ready (median)", round(ready, 3), "s",
               None if quick else 1.0, "<=",
               {"command": what, "samples": samples},
               note=f"{what}; median of {joins}; first heartbeat at "
                    f"{median([s['first_heartbeat'] for s in samples]) * 1000:.0f} ms"),
        Result("idle agent RSS", round(rss, 1), "MB", None if quick else 40, "<=",
               {"threads": threads}),
        Result("idle agent CPU (10 s heartbeat, 25 s long-poll)", round(cpu_pct, 2), "%",
               None if quick else 1.0, "<=", {"window_s": round(elapsed, 1),
                                              "cpu_s": round(cpu, 3)},
               note=f"measured over {elapsed:.0f} s"),
    ]
