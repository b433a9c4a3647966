"""Benchmark 7: the API while hostile connections are held open (issue 9, the connection layer).

Scenarios, each held by an attacker process at 127.0.0.2 that reopens every connection the
server closes (so the attack outlives the 10 s request deadline): none (baseline), 1 silent TCP
connection, 5 partial ClientHellos, 300 idle TLS + 100 half-sent request heads; and the floods
of issue 23: 80 folded Content-Length heads (reopened as soon as they get their 400), 100 slow
readers pipelining GET /v1/openapi.json with a 2 KiB receive window (never reading), 12
unfinished ~1 MiB bodies (the per-source byte budget), 4 connections pipelining 20 x 1 MB
bodies, and 5,000 silent connections from 50 addresses (the total connection cap). The
server's RSS is reported for each. While one is
held, simulated agents heartbeat over kept-alive mTLS from 127.0.0.1 at a steady rate and an
operator sends a signed GET /v1/nodes on a new connection every half second.
Budgets: every such GET < 1 s, heartbeat p99 < 100 ms. Before the connection layer was
rebuilt, one silent connection stalled every new connection for 65 s.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import resource
import selectors
import socket
import ssl
import threading
import time
from typing import Any

from bench.agents import join_agents
from bench.common import (
    Result,
    admin_client,
    admin_for,
    percentile,
    rss_mb,
    start_server,
    workdir,
)
from bench.heartbeat import _slots_for, _step
from bench.loadgen import LoadGen

ATTACKER = "127.0.0.2"
PARTIAL_HELLO = b"\x16\x03\x01\x02\x00\x01"
HALF_HEAD = b"GET /v1/nodes HTTP/1.1\r\nHost: x\r\nX-Slow: "
FOLDED = b"POST /v1/iam/login HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n 1000\r\n\r\n"
SLOW_READ = b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 60
MIB = 1024 * 1024
BIG_HEAD = b"POST /v1/iam/login HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % MIB
SCENARIOS: list[tuple[str, list[tuple[str, int]]]] = [
    ("no attack", []),
    ("1 silent TCP connection", [("tcp", 1)]),
    ("5 partial ClientHellos", [("hello", 5)]),
    ("300 idle + 100 half-sent TLS connections", [("idle", 300), ("half", 100)]),
    ("80 folded Content-Length heads", [("folded", 80)]),
    ("100 slow readers of openapi.json", [("slowread", 100)]),
    ("12 unfinished 1 MiB bodies", [("bigbody", 12)]),
    ("4 x 20 x 1 MB pipelined bodies", [("mbflood", 4)]),
    ("5,000 silent connections from 50 addresses", [("many", 5000)]),
]
QUICK_SKIP = {"5,000 silent connections from 50 addresses", "4 x 20 x 1 MB pipelined bodies"}
# Kinds whose sockets the attacker never reads (reading would end the attack).
UNREAD = {"slowread", "mbflood"}
PROBE_EVERY = 0.5
PROBE_TIMEOUT = 30.0


def _open(kind: str, port: int, ctx: ssl.SSLContext, n: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if kind == "slowread":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.bind((f"127.0.1.{2 + n % 50}" if kind == "many" else ATTACKER, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    if kind == "hello":
        sock.sendall(PARTIAL_HELLO)
    elif kind not in ("tcp", "many"):
        sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        first = {"half": HALF_HEAD, "folded": FOLDED, "slowread": SLOW_READ,
                 "bigbody": BIG_HEAD + b"x" * (MIB - 1000)}.get(kind)
        if first:
            sock.sendall(first)
        if kind == "mbflood":
            body = b"{" + b" " * (MIB - 2) + b"}"
            one = b"POST /v1/iam/login HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % MIB
            threading.Thread(target=_send_quietly, args=(sock, (one + body) * 20),
                             daemon=True).start()
            return sock
    sock.setblocking(False)
    return sock


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def _attacker(pipe: Any, port: int, ca_file: str, plan: list[tuple[str, int]]) -> None:
    """Hold the planned connections open; reopen each one the server closes; report counts."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=ca_file)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    counts = {"opened": 0, "reopened": 0, "failed": 0}
    unread: list[socket.socket] = []

    def open_one(kind: str, n: int = 0) -> None:
        try:
            sock = _open(kind, port, ctx, n)
            if kind in UNREAD:
                unread.append(sock)
            else:
                sel.register(sock, selectors.EVENT_READ, kind)
            counts["opened"] += 1
        except OSError:
            counts["failed"] += 1

    for kind, n in plan:
        for i in range(n):
            open_one(kind, i)
    pipe.send(dict(counts))
    while not pipe.poll():
        for key, _ in sel.select(0.2):
            sock = key.fileobj
            try:
                data = sock.recv(4096)  # type: ignore[union-attr]
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()  # type: ignore[union-attr]
                counts["reopened"] += 1
                open_one(key.data)
    pipe.send(dict(counts, held=len(sel.get_map()) + len(unread)))


def _probe(server: Any, conn: dict[str, Any], until: float) -> tuple[list[float], int]:
    """Signed GET /v1/nodes, each on a new connection, every PROBE_EVERY s until `until`."""
    latencies, errors = [], 0
    while time.monotonic() < until:
        started = time.monotonic()
        client = admin_client(server, conn)
        client.timeout = PROBE_TIMEOUT
        try:
            client.request("GET", "/v1/nodes")
            latencies.append(time.monotonic() - started)
        except Exception:  # noqa: BLE001 - a failed probe is the finding
            errors += 1
        finally:
            client.close()
        time.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - started)))
    return latencies, errors


def run(quick: bool, log: Any) -> list[Result]:
    agents_n, rate = (10, 100) if quick else (30, 300)
    hold_s = 4 if quick else 12  # past the 10 s request deadline: the attacker reconnects
    results: list[Result] = []
    with workdir("hostile") as tmp:
        server = start_server(tmp)
        try:
            _, conn = admin_for(server, tmp)
            admin = admin_client(server, conn)
            agents = join_agents(server.url, conn["tls_ca"], admin, agents_n, tmp / "agents")
            admin.close()
            ca_file = str(server.data_dir / "ca.crt")
            gen = LoadGen("127.0.0.1", server.port, [_slots_for(agents, ca_file)])
            try:
                gen.run("paced", 1.0, 1.0)  # warm-up: every agent connection handshakes
                for name, plan in SCENARIOS:
                    if quick and name in QUICK_SKIP:
                        continue
                    results += _scenario(server, conn, gen, name, plan, agents_n, rate,
                                         hold_s, quick, log)
            finally:
                gen.close()
        finally:
            server.stop()
    return results


def _scenario(server: Any, conn: dict[str, Any], gen: LoadGen, name: str,
              plan: list[tuple[str, int]], agents_n: int, rate: float, hold_s: float,
              quick: bool, log: Any) -> list[Result]:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_attacker, daemon=True,
                       args=(child, server.port, str(server.data_dir / "ca.crt"), plan))
    proc.start()
    try:
        opened = parent.recv()
        time.sleep(0.5)  # let the server accept and start on every held connection
        rss = rss_mb(server.proc.pid)
        probe: dict[str, Any] = {}
        until = time.monotonic() + hold_s

        def probing() -> None:
            probe["lat"], probe["errors"] = _probe(server, conn, until)

        t = threading.Thread(target=probing)
        t.start()
        step = _step(gen, rate, agents_n, hold_s)
        t.join()
        rss = max(rss, rss_mb(server.proc.pid))  # the floods that pin memory grow it late
        parent.send("stop")
        end = parent.recv() if parent.poll(10) else {}
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    lat, errors = probe.get("lat", []), probe.get("errors", 0)
    worst = max(lat, default=PROBE_TIMEOUT) * 1000 if not errors else PROBE_TIMEOUT * 1000
    log(f"  {name}: GET max {worst:.0f} ms (p50 {percentile(lat, 50) * 1000:.1f} ms, "
        f"{len(lat)} ok, {errors} failed); heartbeats {step['achieved']}/s "
        f"p99 {step['p99_ms']} ms errors {step['errors']}; attacker opened "
        f"{opened.get('opened')} (failed {opened.get('failed')}), reopened "
        f"{end.get('reopened', '?')}; server RSS {rss:.0f} MB")
    hb_p99 = step["p99_ms"] if step["errors"] == 0 else float(PROBE_TIMEOUT * 1000)
    details = {"probe_ms": [round(x * 1000, 1) for x in lat], "probe_errors": errors,
               "heartbeats": step, "attacker_start": opened, "attacker_end": end,
               "server_rss_mb": round(rss, 1)}
    return [
        Result(f"signed GET /v1/nodes, new connection, {name} (max)", round(worst, 1), "ms",
               None if quick else 1000, "<=", details,
               note=f"{len(lat)} probes, {errors} failed, p50 "
                    f"{percentile(lat, 50) * 1000:.1f} ms; attacker held "
                    f"{end.get('held', 0)} connections, reopened {end.get('reopened', 0)}; "
                    f"server RSS {rss:.0f} MB"),
        Result(f"heartbeat p99 at {rate:.0f}/s, {name}", hb_p99, "ms",
               None if quick else 100, "<=",
               note=f"{step['achieved']}/s achieved, {step['errors']} errors"),
    ]
