"""`nimbus serve` as a process: signals, hostile connections, many keep-alive clients, TLS files."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import stat
import threading
import time

import pytest

from nimbus.security import pki
from tests.harness import Server


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _get(ctx: ssl.SSLContext, port: int, path: str = "/healthz",
         host: str = "127.0.0.1") -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _ctx(ca_pem: str) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem)


def test_sigterm_exits_cleanly_and_quickly(server):
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0  # generous: the machine is shared
    log = server.log()
    assert "Traceback" not in log and "stopped" in log


def test_sigint_exits_cleanly(server):
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=20) == 0
    assert "Traceback" not in server.log()


def _new_lines(server: Server, offset: int) -> list[str]:
    return [line for line in server.log()[offset:].splitlines() if line.strip()]


def test_clients_dropping_mid_handshake_are_quiet(server_factory):
    # At debug level even routine connection noise is logged: still one line at most.
    server = server_factory({"log_level": "debug"})
    ctx = _ctx(server.ca_pem())
    attempts = 0

    def drop(payload: bytes) -> None:
        nonlocal attempts
        attempts += 1
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            if payload:
                s.sendall(payload)
            time.sleep(0.05)

    offset = len(server.log())
    drop(b"")  # connect, say nothing, leave
    # The first bytes of a TLS ClientHello, then gone.
    drop(bytes.fromhex("160301020001000200fc0303") + os.urandom(20))
    drop(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP on the TLS port
    # A full TLS client that aborts right after the handshake starts.
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    raw.sendall(outgoing.read())  # a complete ClientHello
    raw.recv(1024)  # the start of the server's answer
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    raw.close()  # RST
    attempts += 1
    # The server is still fine, and said at most one line per bad client.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _get(ctx, server.port)[0] == 200:
            break
    time.sleep(0.5)
    lines = _new_lines(server, offset)
    assert len(lines) <= attempts, lines
    assert "Traceback" not in server.log()
    assert server.proc.poll() is None


def test_three_hundred_concurrent_keep_alive_connections(server):
    ctx = _ctx(server.ca_pem())
    n, per_conn = 300, 3
    barrier = threading.Barrier(n, timeout=120)
    results: list[object] = [None] * n

    def client(i: int) -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=120)
        try:
            conn.connect()
            barrier.wait()  # all 300 are connected (TLS done) at the same time
            statuses = []
            socks = set()
            for _ in range(per_conn):
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                body = json.loads(resp.read())
                statuses.append((resp.status, body["data"]["status"], resp.will_close))
                socks.add(id(conn.sock))
            results[i] = (statuses, len(socks))
        except Exception as exc:  # noqa: BLE001 - reported below, per connection
            results[i] = exc
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    failures = [r for r in results if not isinstance(r, tuple)]
    assert not failures, f"{len(failures)} of {n} connections failed, e.g. {failures[:3]}"
    for statuses, socks in results:  # type: ignore[misc]
        assert statuses == [(200, "ok", False)] * per_conn
        assert socks == 1, "the connection was not kept alive"
    assert server.proc.poll() is None and "Traceback" not in server.log()


def test_server_certificate_sans(server):
    sans = pki.server_cert_sans((server.data_dir / "server.crt").read_text())
    assert {"127.0.0.1", "localhost", "10.106.103.1", socket.gethostname()} <= sans
    # …and it is the one actually served, verifiable by name.
    ctx = _ctx(server.ca_pem())
    assert _get(ctx, server.port, host="localhost")[0] == 200
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s, \
            ctx.wrap_socket(s, server_hostname="127.0.0.1") as tls:
        served = ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True))
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert pki.cert_info(served).fingerprint == pki.cert_info(
        (server.data_dir / "server.crt").read_text()).fingerprint


def test_overlay_address_follows_the_configured_subnet(server_factory):
    srv = server_factory({"wireguard_subnet": "10.77.0.0/24", "public_address": "192.0.2.10"})
    sans = pki.server_cert_sans((srv.data_dir / "server.crt").read_text())
    assert {"10.77.0.1", "192.0.2.10", "127.0.0.1", "localhost"} <= sans


def test_key_files_are_0600_and_the_data_dir_0700(server, admin):
    data = server.data_dir
    assert _mode(data) == 0o700
    for name in ("ca.key", "server.key", "jwt.key", "store.key", "audit.log",
                 "endpoint.json"):
        assert _mode(data / name) == 0o600, name
    for optional in ("wg.key", "bootstrap.secret"):
        if (data / optional).exists():
            assert _mode(data / optional) == 0o600, optional
    assert _mode(data / "store") == 0o700
    for path in (data / "store").iterdir():
        assert _mode(path) == 0o600, path
    for public in ("ca.crt", "server.crt"):
        assert not _mode(data / public) & 0o022
    # The HOME-relative CLI config holds the secret key.
    assert _mode(server.tmp.parent / "home" / ".nimbus" / "config.json") == 0o600


def test_operator_tls_certificate_is_served(server_factory, tmp_path):
    ca_cert, ca_key = pki.create_ca(time.time(), name="Operator CA")
    cert, key = pki.create_server_cert(ca_cert, ca_key, ["127.0.0.1", "localhost"], time.time())
    (tmp_path / "op.crt").write_text(cert)
    (tmp_path / "op.key").write_text(key)
    os.chmod(tmp_path / "op.key", 0o600)
    srv = server_factory({"tls_cert": str(tmp_path / "op.crt"),
                          "tls_key": str(tmp_path / "op.key")})
    assert _get(_ctx(ca_cert), srv.port)[0] == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        _get(_ctx(srv.ca_pem()), srv.port)  # the internal CA did not sign what is served
    # The internal CA still exists (it signs node certificates) and is what /v1/ca returns.
    status, body = _get(_ctx(ca_cert), srv.port, "/v1/ca")
    assert status == 200 and body.decode() == srv.ca_pem() != ca_cert


def test_unreadable_operator_tls_files_are_a_clear_error(tmp_path):
    (tmp_path / "cp").mkdir()
    srv = Server(tmp_path / "cp", {"tls_cert": str(tmp_path / "missing.crt"),
                                   "tls_key": str(tmp_path / "missing.key")})
    with pytest.raises(RuntimeError) as err:
        srv.start()
    assert "cannot read TLS file" in str(err.value) and "Traceback" not in str(err.value)


def test_world_readable_ca_key_is_refused_with_the_fix(server):
    assert server.stop() == 0
    ca_key = server.data_dir / "ca.key"
    os.chmod(ca_key, 0o644)
    with pytest.raises(RuntimeError) as err:
        server.start()
    message = str(err.value)
    assert f"chmod 600 {ca_key}" in message
    assert "Traceback" not in message
    assert server.proc.returncode not in (0, None)
    os.chmod(ca_key, 0o600)
    server.start()  # fixed as told: it starts again


def test_loose_data_dir_is_tightened_at_start(server):
    assert server.stop() == 0
    os.chmod(server.data_dir, 0o755)  # noqa: S103 - the unsafe mode under test
    server.start()
    assert _mode(server.data_dir) == 0o700
