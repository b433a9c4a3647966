"""Benchmark 1 (+6): heartbeat capacity over kept-alive mTLS with 10,000 registered nodes."""

from __future__ import annotations

import random
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from bench.agents import SimAgent, join_agents
from bench.common import (
    Result,
    admin_client,
    admin_for,
    cpu_seconds,
    peak_rss_mb,
    percentile,
    rss_mb,
    seed_nodes,
    start_server,
    workdir,
)
from bench.loadgen import LoadGen, Slot

TOTAL_NODES = 10_000
FLUSH_INTERVAL_S = 5  # the server's batched runtime flush (nimbus/server/runtime.py)
WATCHED = ("nodes", "runtime", "tasks", "revoked", "users", "keys")


class WriteCounter:
    """Counts rewrites of store files by polling (inode, mtime, size) every 20 ms."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.counts = dict.fromkeys(WATCHED, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _stamp(self, name: str) -> tuple[int, int, int] | None:
        try:
            st = (self.store_dir / f"{name}.json").stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _run(self) -> None:
        last = {n: self._stamp(n) for n in WATCHED}
        while not self._stop.wait(0.02):
            for name in WATCHED:
                now = self._stamp(name)
                if now != last[name]:
                    self.counts[name] += 1
                    last[name] = now

    def __enter__(self) -> WriteCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _slots_for(agents: list[SimAgent], ca_file: str) -> Any:
    def factory() -> list[Slot]:
        slots = []
        for agent in agents:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_verify_locations(cafile=ca_file)
            ctx.load_cert_chain(agent.cert_file, agent.key_file)
            bodies = [agent.heartbeat_body(round(random.random(), 3)) for _ in range(8)]

            def make(bodies: list[bytes] = bodies) -> tuple[str, str, bytes, dict[str, str]]:
                return ("POST", "/v1/internal/heartbeat", random.choice(bodies),
                        {"Content-Type": "application/json"})

            slots.append(Slot(make, ctx))
        return slots
    return factory


def _step(gen: LoadGen, rate: float, agents: int, duration: float) -> dict[str, Any]:
    res, elapsed = gen.run("paced", rate / agents, duration)
    ok = len(res.latencies)
    return {"target": rate, "achieved": round(ok / elapsed, 1), "sent": res.sent,
            "errors": res.errors, "error_samples": res.error_samples,
            "p50_ms": round(percentile(res.latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(res.latencies, 99) * 1000, 2),
            "max_ms": round(max(res.latencies, default=0) * 1000, 2), "seconds": duration}


def _good(step: dict[str, Any]) -> bool:
    return (step["errors"] == 0 and step["p99_ms"] <= 100
            and step["achieved"] >= 0.97 * step["target"])


def _fleet(tmp: Path, agents_n: int, log: Any) -> tuple[Any, list[SimAgent], float]:
    """A control plane holding TOTAL_NODES nodes, `agents_n` of them joined for real (their
    simulated agents returned), restarted; and how long the restart took."""
    server = start_server(tmp, {"heartbeat_interval_sec": 10})
    try:
        _, conn = admin_for(server, tmp)
        admin = admin_client(server, conn)
        t0 = time.perf_counter()
        agents = join_agents(server.url, conn["tls_ca"], admin, agents_n, tmp / "agents")
        admin.close()
        log(f"  joined {agents_n} simulated agents in {time.perf_counter() - t0:.1f} s")
    finally:
        server.stop()
    seed_nodes(server.data_dir, TOTAL_NODES - agents_n)
    t0 = time.perf_counter()
    server.start(timeout=120)
    return server, agents, time.perf_counter() - t0


def run(quick: bool, log: Any) -> list[Result]:
    agents_n = 60 if quick else 120
    procs = 3
    with workdir("heartbeat") as tmp:
        server, agents, start_s = _fleet(tmp, agents_n, log)
        pid = server.proc.pid  # type: ignore[union-attr]
        try:
            idle_rss = rss_mb(pid)
            log(f"  server restarted with {TOTAL_NODES} nodes in {start_s:.2f} s, "
                f"RSS {idle_rss:.0f} MB")
            ca_file = str(server.data_dir / "ca.crt")
            chunks = [agents[i::procs] for i in range(procs)]
            gen = LoadGen("127.0.0.1", server.port, [_slots_for(c, ca_file) for c in chunks])
            try:
                gen.run("paced", 1.0, 1.0)  # warm-up: every connection does its TLS handshake
                # The agents' first heartbeats after their joins make the server drop the
                # certificates it kept for lost join answers: one rewrite of nodes.json
                # (10,000 nodes) in the next batched flush. A one-off after a join burst, not
                # the steady state: measured here on its own, before the ramp.
                settle = _step(gen, 100, agents_n, FLUSH_INTERVAL_S + 2)
                log(f"  after the join burst (one nodes.json clean-up): p99 "
                    f"{settle['p99_ms']} ms, max {settle['max_ms']} ms at 100/s")
                steps = _ramp(gen, agents_n, quick, log)
                # Sustain the best passing ramp rate; if that fails over the long run, step
                # down (at most twice), so a single stall does not hide the real capacity.
                candidates = sorted({s["target"] for s in steps if _good(s)}, reverse=True)
                candidates = (candidates or [steps[0]["target"]])[:1 if quick else 3]
                sustain_s = 5 if quick else 60
                attempts = []
                for rate in candidates:
                    cpu0 = cpu_seconds(pid)
                    with WriteCounter(server.data_dir / "store") as writes:
                        sustained = _step(gen, rate, agents_n, sustain_s)
                    cpu = cpu_seconds(pid) - cpu0
                    attempts.append(sustained)
                    log(f"  sustained {sustained['achieved']}/s for {sustain_s} s, "
                        f"p99 {sustained['p99_ms']} ms, errors {sustained['errors']}")
                    if _good(sustained):
                        break
            finally:
                gen.close()
            peak = peak_rss_mb(pid)
            end_rss = rss_mb(pid)
            metrics = _metrics_check(server.url)
        finally:
            server.stop()
    ok_count = sustained["achieved"] * sustain_s
    details = {"agents": agents_n, "load_processes": procs, "registered_nodes": TOTAL_NODES,
               "ramp": steps, "after_join_burst": settle, "sustained": sustained,
               "sustain_attempts": attempts,
               "server_cpu_us_per_heartbeat": round(cpu / max(ok_count, 1) * 1e6, 1),
               "server_cpu_percent": round(cpu / sustain_s * 100, 1),
               "store_writes_during_sustained": writes.counts, "metrics": metrics}
    sustained_ok = sustained["errors"] == 0 and sustained["p99_ms"] <= 100
    rate = sustained["achieved"] if sustained_ok else 0.0
    hb_note = (f"{sustain_s} s at {sustained['achieved']}/s: p99 {sustained['p99_ms']} ms, "
               f"{sustained['errors']} errors, {sustained['sent']} sent")
    per_hb_writes = sum(writes.counts[n] for n in ("nodes", "tasks", "revoked"))
    return [
        Result("heartbeat capacity (sustained, p99<=100ms, 0 errors)", rate, "heartbeats/s",
               None if quick else 1000, ">=", details, hb_note),
        Result("heartbeat p99 at sustained rate", sustained["p99_ms"], "ms",
               None if quick else 100, "<="),
        Result("store rewrites of nodes/tasks/revoked during heartbeats", per_hb_writes,
               "writes", 0, "<=",
               note=f"runtime.json batch flushes: {writes.counts['runtime']} "
                    f"in {sustain_s} s; {sustained['sent']} heartbeats"),
        Result("control-plane RSS with 10,000 nodes (peak under load)", round(peak, 1), "MB",
               200, "<=", {"idle_rss_mb": round(idle_rss, 1), "end_rss_mb": round(end_rss, 1)}),
        Result("server start-up with 10,000 nodes (to healthy)", round(start_s, 3), "s", None,
               note="includes Python start, TLS setup and store load"),
        Result("heartbeat max latency after a join burst (one nodes.json clean-up)",
               settle["max_ms"], "ms", None,
               note=f"100/s for {FLUSH_INTERVAL_S + 2} s right after {agents_n} agents' first "
                    f"heartbeats: p99 {settle['p99_ms']} ms"),
    ]


def _ramp(gen: LoadGen, agents: int, quick: bool, log: Any) -> list[dict[str, Any]]:
    rates = [500, 1000, 1500] if quick else [250, 500, 750, 1000, 1250, 1500, 1750, 2000,
                                               2500, 3000]
    seconds = 2 if quick else 5
    steps = []
    for rate in rates:
        step = _step(gen, rate, agents, seconds)
        steps.append(step)
        log(f"  ramp {rate}/s -> {step['achieved']}/s p50 {step['p50_ms']} ms "
            f"p99 {step['p99_ms']} ms errors {step['errors']}")
        if not _good(step):
            break
    return steps


def _metrics_check(url: str) -> dict[str, Any]:
    """GET /metrics from loopback: request counts, latencies, heartbeats, tasks, node status."""
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url + "/metrics", context=ctx, timeout=30) as resp:  # noqa: S310
        text = resp.read().decode()
    wanted = {"requests": "nimbus_http_requests_total{",
              "latency": "nimbus_http_request_seconds_bucket{",
              "heartbeats": "nimbus_heartbeats_total", "tasks": "nimbus_tasks_open",
              "nodes_by_status": 'nimbus_nodes{status="ready"}'}
    found = {k: v in text for k, v in wanted.items()}
    hb = [line for line in text.splitlines() if line.startswith("nimbus_heartbeats_total")]
    return {"present": found, "heartbeats_total": hb[0].split()[-1] if hb else None}


def fleet(agents_n: int, hz: float, seconds: float, log: Any) -> dict[str, Any]:
    """`agents_n` agents each heartbeating `hz` times a second for `seconds` (10,000 nodes
    registered), after the join burst's one-off clean-up; latency percentiles and CPU."""
    with workdir("heartbeat-fleet") as tmp:
        server, agents, _ = _fleet(tmp, agents_n, log)
        pid = server.proc.pid  # type: ignore[union-attr]
        try:
            chunks = [agents[i::3] for i in range(3)]
            gen = LoadGen("127.0.0.1", server.port,
                          [_slots_for(c, str(server.data_dir / "ca.crt")) for c in chunks])
            try:
                gen.run("paced", 1.0, 1.0)
                _step(gen, 100, agents_n, FLUSH_INTERVAL_S + 2)  # the join burst's clean-up
                cpu0 = cpu_seconds(pid)
                step = _step(gen, agents_n * hz, agents_n, seconds)
                step["server_cpu_us_per_heartbeat"] = round(
                    (cpu_seconds(pid) - cpu0) / max(step["achieved"] * seconds, 1) * 1e6, 1)
            finally:
                gen.close()
        finally:
            server.stop()
    return step


if __name__ == "__main__":
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(description="N agents heartbeating at a fixed rate")
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--hz", type=float, default=2.0, help="heartbeats per agent per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    result = fleet(args.agents, args.hz, args.seconds, lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, indent=2))
