"""Hostile network, round 3 (issue 23): framing tricks, slow readers, memory an unauthenticated
peer can pin, pipelining floods, odd TLS names.

As in test_hostile_clients.py the attackers connect from 127.0.0.2 and up; no test asserts a
latency, each asserts that legitimate requests succeed at all within a generous deadline while
an attack that used to hold every worker is held (or that the attacker gets its JSON refusal).
`python -m bench --only hostile` measures the figures.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from typing import Any

import pytest

from nimbus.client import tls_context
from tests.harness import Cli, Server, bootstrap_admin
from tests.security.helpers import add_node, join, operator
from tests.security.test_hostile_clients import (
    DEADLINE,
    attacker_tls,
    held,
    parse_response,
    raw_exchange,
    read_all,
    signed_list,
    within,
)

FOLDED = b"POST /v1/iam/login HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n 1000\r\n\r\n"


def tls_from(server: Server, host: str, rcvbuf: int = 0) -> ssl.SSLSocket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:  # before connect, so the window the client announces stays tiny
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((host, 0))
    sock.settimeout(DEADLINE)
    sock.connect(("127.0.0.1", server.port))
    return tls_context(server.ca_pem()).wrap_socket(sock, server_hostname="127.0.0.1")


@pytest.fixture
def tolerant(server_factory: Any) -> Server:
    return server_factory({"max_connections_per_source": 1024})


def _agent(server: Server, tmp_path: Any) -> tuple[Any, Any, Any]:
    admin = bootstrap_admin(server, Cli(tmp_path / "home"))
    ops = operator(server, admin)
    _, fields, _ = add_node(ops)
    node = join(server, fields, tmp_path / "node")
    agent = node.client(server)
    agent.request("POST", "/v1/internal/heartbeat", {})
    return admin, ops, agent


# -- item 1: a folded header line desynchronised the gate and cheroot ---------------------

@pytest.mark.parametrize("request_bytes", [
    FOLDED,
    b"GET /healthz HTTP/1.1\r\n X: folded first\r\nHost: x\r\n\r\n",  # was a 500
    b"POST /v1/iam/login HTTP/1.1\r\nContent-Length : 1000\r\n\r\n",
    b"POST /v1/iam/login HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /v1/iam/login HTTP/1.1\r\nTransfer-Encoding: identity\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\nX-Smuggle: 1\r\n\r\n",
])
def test_framing_the_gate_and_cheroot_could_read_differently_gets_a_json_400(
        server, request_bytes):
    status, headers, body = parse_response(raw_exchange(server, request_bytes, read_timeout=5))
    assert status == 400, body
    assert headers["content-type"] == "application/json" and body["error"]


def test_folded_content_lengths_cannot_hold_the_workers(tolerant, tmp_path):
    """~70 unauthenticated connections used to hold all 64 workers, each waiting for the 1000
    body bytes its folded Content-Length promised, renewed by one byte at a time."""
    admin, ops, agent = _agent(tolerant, tmp_path)
    socks = [attacker_tls(tolerant) for _ in range(80)]
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for s in socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"a")

    for s in socks:
        s.sendall(FOLDED)
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        with held(socks):
            for _ in range(3):
                assert len(within(DEADLINE, lambda: signed_list(tolerant, admin))) == 1
                within(DEADLINE, lambda: agent.request("POST", "/v1/internal/heartbeat", {}))
                time.sleep(2)
    finally:
        stop.set()
        t.join()
    agent.close()
    ops.close()


# -- item 2: slow readers held workers -------------------------------------------------------

@pytest.fixture
def two_worker_server(tmp_path: Any) -> Any:
    """The real connection layer (gate, cheroot, TLS) in-process with 2 workers, a 60 s
    request deadline and an app whose /big answer (8 MiB) is larger than any socket buffer:
    a worker that waits for a client to read it is held for the whole deadline."""
    from nimbus.security.pki import create_ca, create_server_cert
    from nimbus.server.http.gate import Limits
    from nimbus.server.http.httpd import ApiServer, server_tls_context

    ca, ca_key = create_ca(time.time())
    cert, key = create_server_cert(ca, ca_key, ["127.0.0.1"], time.time())
    for name, pem in (("ca.crt", ca), ("s.crt", cert), ("s.key", key)):
        (tmp_path / name).write_text(pem)
    big = b"x" * (8 * 1024 * 1024)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = big if environ["PATH_INFO"] == "/big" else b"ok"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    api = ApiServer(app, "127.0.0.1", 0, server_tls_context(
        tmp_path / "s.crt", tmp_path / "s.key", tmp_path / "ca.crt"), threads=2, max_threads=2,
        limits=Limits(request_timeout=60))
    api.start()
    api.ca_pem = lambda: ca  # type: ignore[attr-defined]
    api.port = api.bound_port  # type: ignore[attr-defined]
    yield api
    api.stop()


def test_clients_that_never_read_a_large_response_hold_no_worker(two_worker_server):
    slow = [tls_from(two_worker_server, "127.0.0.2", rcvbuf=2048) for _ in range(4)]
    with held(slow):
        for s in slow:
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        for _ in range(3):  # before: both workers blocked in a send for the 60 s deadline
            data = within(DEADLINE, lambda: raw_exchange(
                two_worker_server, b"GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n"))
            assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok")


def test_a_large_response_reaches_a_slow_reader_whole(server):
    """The gate sends the rest of a response a client reads slowly, then serves the next."""
    one = b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
    sock = tls_from(server, "127.0.0.2", rcvbuf=2048)
    with held([sock]):
        sock.sendall(one * 3 + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(1)  # let the server fill the tiny window and queue the rest
        data = read_all(sock)
    assert data.count(b"HTTP/1.1 200") == 4
    bodies = data.split(b"HTTP/1.1 200")[1:4]
    assert len({len(b) for b in bodies}) == 1  # three whole, identical documents


# -- item 7: memory an unauthenticated peer can pin ------------------------------------------

def test_unfinished_bodies_from_one_address_are_capped(server_factory):
    """Incomplete ~1 MiB bodies parked in the gate (+463 MB from one address before)."""
    srv = server_factory({"max_buffered_per_source_mib": 4})
    head = b"POST /v1/iam/login HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
    part = b"x" * (1048576 - 1000)
    socks, refused = [], 0
    for _ in range(12):
        s = tls_from(srv, "127.0.0.2")
        socks.append(s)
        with contextlib.suppress(OSError):
            s.sendall(head + part)
    with held(socks):
        for s in socks:
            s.settimeout(1.5)
            try:
                data = s.recv(4096)
            except (TimeoutError, OSError):
                continue
            if data.startswith(b"HTTP/1.1 503"):
                refused += 1
        assert refused >= 12 - 4 - 1, refused  # at most the budget stays parked
        # Another address is not affected.
        assert raw_exchange(srv, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
                            ).startswith(b"HTTP/1.1 200")


def _idle(s: ssl.SSLSocket) -> ssl.SSLSocket:
    """One request answered in full: the connection is then idle (65 s idle timeout) rather
    than waiting for its first request, which the 10 s request deadline would end with a 408
    on a slow machine (the 408 bytes then read as "still open")."""
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, "closed before answering"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200") and len(body) == length
    return s


def test_at_the_connection_limit_the_biggest_source_makes_room(server_factory):
    """Tens of thousands of silent connections from many addresses pinned memory; now the
    total is capped and a newcomer pushes out the oldest waiting connection of the address
    that holds the most."""
    srv = server_factory({"max_connections": 40})
    flood = [_idle(tls_from(srv, "127.0.0.2")) for _ in range(30)]
    others = [_idle(tls_from(srv, f"127.0.0.{3 + i}")) for i in range(10)]
    with held(flood + others):
        time.sleep(0.5)
        newcomers = [tls_from(srv, "127.0.0.1") for _ in range(5)]  # each needs a slot
        with held(newcomers):
            for s in newcomers:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert s.recv(100).startswith(b"HTTP/1.1 200")
            closed = 0
            for s in flood[:10]:
                s.settimeout(2)
                try:
                    closed += s.recv(1) == b""
                except (TimeoutError, ssl.SSLError, OSError):
                    closed += 1
            assert closed >= 5  # the flood's oldest went
            for s in others:  # the small sources kept theirs
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                s.settimeout(DEADLINE)
                assert s.recv(100).startswith(b"HTTP/1.1 200")


# -- item 8: pipelining cost -----------------------------------------------------------------

def test_a_long_pipeline_is_answered_in_order(server):
    many = b"".join(b"GET /healthz?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(2000))
    data = raw_exchange(server, many + b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
                        read_timeout=60)
    assert data.count(b"HTTP/1.1 200") == 2001


def test_a_pipeline_flood_of_megabyte_bodies_does_not_stall_the_api(tolerant, tmp_path):
    admin, ops, agent = _agent(tolerant, tmp_path)
    body = b"{" + b" " * (1024 * 1024 - 2) + b"}"
    one = b"POST /v1/iam/login HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    socks = [attacker_tls(tolerant) for _ in range(4)]

    def flood(s: ssl.SSLSocket) -> None:
        with contextlib.suppress(OSError):
            for _ in range(20):
                s.sendall(one + body)

    threads = [threading.Thread(target=flood, args=(s,), daemon=True) for s in socks]
    for t in threads:
        t.start()
    with held(socks):
        for _ in range(3):
            assert len(within(DEADLINE, lambda: signed_list(tolerant, admin))) == 1
            within(DEADLINE, lambda: agent.request("POST", "/v1/internal/heartbeat", {}))
    agent.close()
    ops.close()


# -- item 12 (part): a non-ASCII server name -------------------------------------------------

@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_non_ascii_server_name_completes_the_handshake_without_a_traceback(server):
    for _ in range(3):
        done = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername",
             "\u00e9x.example"], input=b"", capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr[-500:]
    time.sleep(0.5)
    assert "Traceback" not in server.log()
    assert raw_exchange(server, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
                        ).startswith(b"HTTP/1.1 200")
