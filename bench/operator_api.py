"""Benchmark 2: GET /v1/nodes (100 nodes) over 16 kept-alive connections, JWT and HMAC."""

from __future__ import annotations

import ssl
from typing import Any

from bench.common import (
    Result,
    admin_client,
    admin_for,
    cpu_seconds,
    percentile,
    start_seeded_server,
    workdir,
)
from bench.loadgen import LoadGen, Slot

NODES = 100
CONNECTIONS = 16
PROCESSES = 2
PATH = "/v1/nodes"


def _context(ca_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=ca_file)
    return ctx


def _jwt_slots(token: str, ca_file: str, n: int) -> Any:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def factory() -> list[Slot]:
        return [Slot(lambda: ("GET", PATH, None, headers), _context(ca_file)) for _ in range(n)]
    return factory


def _hmac_slots(conn: dict[str, Any], ca_file: str, n: int) -> Any:
    def factory() -> list[Slot]:
        import time

        from nimbus.security.hmac_sign import sign_headers

        def make() -> tuple[str, str, None, dict[str, str]]:
            hdrs = sign_headers(conn["access_key"], conn["secret_key"], "GET", PATH, b"",
                                time.time())
            hdrs["Accept"] = "application/json"
            return ("GET", PATH, None, hdrs)
        return [Slot(make, _context(ca_file)) for _ in range(n)]
    return factory


def _measure(gen: LoadGen, seconds: float, pid: int) -> dict[str, Any]:
    gen.run("closed", 0, 1.0)  # warm-up (TLS handshakes)
    cpu0 = cpu_seconds(pid)
    res, elapsed = gen.run("closed", 0, seconds)
    cpu = cpu_seconds(pid) - cpu0
    ok = len(res.latencies)
    return {"rps": round(ok / elapsed, 1), "requests": res.sent, "errors": res.errors,
            "error_samples": res.error_samples,
            "p50_ms": round(percentile(res.latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(res.latencies, 99) * 1000, 2),
            "server_cpu_percent": round(cpu / elapsed * 100, 1),
            "server_cpu_us_per_request": round(cpu / max(ok, 1) * 1e6, 1)}


def run(quick: bool, log: Any) -> list[Result]:
    seconds = 3 if quick else 20
    with workdir("operator") as tmp:
        server = start_seeded_server(tmp, NODES)
        try:
            _, conn = admin_for(server, tmp)
            admin = admin_client(server, conn)
            assert len(admin.request("GET", PATH)) == NODES
            token = admin.request("POST", "/v1/iam/token")["token"]
            admin.close()
            ca_file = str(server.data_dir / "ca.crt")
            pid = server.proc.pid  # type: ignore[union-attr]
            per = CONNECTIONS // PROCESSES
            figures = {}
            for scheme, make in (("jwt", lambda: _jwt_slots(token, ca_file, per)),
                                 ("hmac", lambda: _hmac_slots(conn, ca_file, per))):
                gen = LoadGen("127.0.0.1", server.port, [make() for _ in range(PROCESSES)])
                try:
                    figures[scheme] = _measure(gen, seconds, pid)
                finally:
                    gen.close()
                f = figures[scheme]
                log(f"  {scheme}: {f['rps']} req/s p50 {f['p50_ms']} ms p99 {f['p99_ms']} ms "
                    f"errors {f['errors']} server CPU {f['server_cpu_percent']}%")
        finally:
            server.stop()
    results = []
    for scheme, budget in (("jwt", 3000), ("hmac", 2000)):
        f = figures[scheme]
        rps = f["rps"] if f["errors"] == 0 else 0.0
        results.append(Result(f"operator GET /v1/nodes (100 nodes), {scheme.upper()}, 16 conns",
                              rps, "req/s", None if quick else budget, ">=", f,
                              note=f"{f['errors']} errors, p50 {f['p50_ms']} ms, "
                                   f"server {f['server_cpu_us_per_request']} µs CPU/request"))
        results.append(Result(f"operator p99, {scheme.upper()}", f["p99_ms"], "ms",
                              None if quick else 50, "<="))
    return results
