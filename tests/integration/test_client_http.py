"""nimbus.client's own HTTP/1.1 over TLS, against scripted servers on loopback.

The real API server is exercised by every other integration test; these cover what it never
sends on purpose: chunked bodies, interim 100 answers, bodies ended by close, connections
dropped while idle, garbage and oversized answers, and a server that never answers.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nimbus import client as client_module
from nimbus.client import ApiClient, HmacAuth, split_url
from nimbus.errors import NimbusError, NotFound, Throttled, Unavailable
from nimbus.security import pki

Handler = Callable[[ssl.SSLSocket, bytes], bool]  # returns False to close the connection


def _certs(d: Path, sans: list[str]) -> tuple[str, Path, Path]:
    now = time.time()
    ca_pem, ca_key = pki.create_ca(now)
    cert, key = pki.create_server_cert(ca_pem, ca_key, sans, now)
    (d / "s.crt").write_text(cert)
    (d / "s.key").write_text(key)
    return ca_pem, d / "s.crt", d / "s.key"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> tuple[str, Path, Path]:
    return _certs(tmp_path_factory.mktemp("client-certs"), ["127.0.0.1"])


class Scripted:
    """A TLS server on 127.0.0.1 (or `host`) that answers each request with the handler's
    bytes."""

    def __init__(self, certs: tuple[str, Path, Path], handler: Handler,
                 host: str = "127.0.0.1") -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(certs[1]), str(certs[2]))
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, 0), family=family)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.requests: list[bytes] = []
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as conn:
                    conn.settimeout(5)
                    while True:
                        request = _read_request(conn)
                        if request is None:
                            break
                        self.requests.append(request)
                        if not self.handler(conn, request):
                            break
            except (OSError, ssl.SSLError):
                continue

    def close(self) -> None:
        self.sock.close()


def _read_request(conn: ssl.SSLSocket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture(autouse=True, params=["_ssl", "ssl.py"])
def transport(request, monkeypatch) -> str:
    """Every test runs on both of the client's TLS layers: the C modules it uses where it
    can, and ssl.py, its fallback where `_ssl` lacks what it needs."""
    if request.param == "ssl.py":
        monkeypatch.setattr(client_module, "_FAST", False)
    return request.param


@pytest.fixture
def serve(certs) -> Iterator[Callable[[Handler], tuple[Scripted, ApiClient]]]:
    servers: list[Scripted] = []
    clients: list[ApiClient] = []

    def make(handler: Handler, **kw) -> tuple[Scripted, ApiClient]:
        srv = Scripted(certs, handler)
        servers.append(srv)
        client = ApiClient(f"https://127.0.0.1:{srv.port}", certs[0], **kw)
        clients.append(client)
        return srv, client

    yield make
    for c in clients:
        c.close()
    for s in servers:
        s.close()


def ok(body: bytes = b'{"data":{"ok":true}}', extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def test_keeps_one_connection_for_many_requests(serve):
    srv, client = serve(lambda c, r: c.sendall(ok()) or True)
    for _ in range(5):
        assert client.request("GET", "/v1/x") == {"ok": True}
    assert srv.connections == 1
    first = srv.requests[0].decode()
    assert first.startswith("GET /v1/x HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{srv.port}\r\n" in first


def test_sends_json_body_and_signature_headers(serve):
    srv, client = serve(lambda c, r: c.sendall(ok()) or True,
                        auth=HmacAuth("NBUSKEY", "secret-value"))
    client.request("POST", "/v1/nodes", {"ip_address": "192.0.2.1"})
    head, _, body = srv.requests[0].partition(b"\r\n\r\n")
    assert body == b'{"ip_address":"192.0.2.1"}'
    assert b"Content-Length: %d\r\n" % len(body) in head and b"X-Signature: " in head
    assert b"secret-value" not in srv.requests[0]
    assert "secret-value" not in repr(client.auth)


def test_chunked_body_and_interim_100(serve):
    def handler(conn, request):
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\n{\"dat\r\n"
                     b"b;ext=1\r\na\":[1,2,3]}\r\n0\r\nX-Trailer: y\r\n\r\n")
        return True

    _, client = serve(handler)
    assert client.request("GET", "/v1/x") == [1, 2, 3]
    assert client.request("GET", "/v1/x") == [1, 2, 3]  # the connection is still in sync


def test_body_ended_by_close_and_connection_close(serve):
    def handler(conn, request):
        conn.sendall(b'HTTP/1.0 200 OK\r\n\r\n{"data":"until-eof"}')
        return False

    srv, client = serve(handler)
    assert client.request("GET", "/v1/x") == "until-eof"
    assert client.request("GET", "/v1/x") == "until-eof"
    assert srv.connections == 2

    srv2, client2 = serve(lambda c, r: c.sendall(ok(extra=b"Connection: close\r\n")) and False)
    assert client2.request("GET", "/v1/x") == {"ok": True}
    assert client2.request("GET", "/v1/x") == {"ok": True}
    assert srv2.connections == 2


def test_retries_once_when_an_idle_connection_was_dropped(serve):
    count = {"n": 0}

    def handler(conn, request):
        count["n"] += 1
        conn.sendall(ok())
        return count["n"] != 1  # drop the connection after the first answer, silently

    srv, client = serve(handler)
    client.request("GET", "/v1/a")
    time.sleep(0.1)
    assert client.request("GET", "/v1/b") == {"ok": True}
    assert srv.connections == 2


def test_a_fresh_connection_closed_without_answer_is_unavailable(serve):
    _, client = serve(lambda c, r: False)
    with pytest.raises(Unavailable, match="closed the connection"):
        client.request("GET", "/v1/x")


@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno-colon-here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-H: 1\r\n" * 150 + b"\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
])
def test_garbage_answers_become_one_unavailable_error(serve, answer):
    _, client = serve(lambda c, r: c.sendall(answer) and False)
    with pytest.raises(Unavailable) as info:
        client.request("GET", "/v1/x")
    assert "Traceback" not in info.value.message and len(info.value.message) < 300


def test_error_statuses_map_to_nimbus_errors(serve):
    answers = iter([
        b'HTTP/1.1 404 Not Found\r\nContent-Length: 22\r\n\r\n{"error":"no such id"}',
        b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\nnope",
    ])
    _, client = serve(lambda c, r: c.sendall(next(answers)) or True)
    with pytest.raises(NotFound, match="no such id"):
        client.request("GET", "/v1/x")
    with pytest.raises(Throttled) as throttled:
        client.request("GET", "/v1/x")
    assert throttled.value.retry_after == 7
    with pytest.raises(Unavailable, match="HTTP 502"):
        client.request("GET", "/v1/x")


def test_a_silent_server_times_out(serve):
    _, client = serve(lambda c, r: time.sleep(2) or False, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="did not answer in time"):
        client.request("GET", "/v1/x")
    assert time.monotonic() - started < 1.9


def test_a_server_that_never_answers_the_handshake_times_out():
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never speaks TLS
        client = ApiClient(f"https://127.0.0.1:{listener.getsockname()[1]}", None,
                           timeout=0.3)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="did not answer in time"):
            client.request("GET", "/v1/x")
        assert time.monotonic() - started < 5


def test_wrong_ca_is_a_tls_verification_error(serve):
    srv, _ = serve(lambda c, r: c.sendall(ok()) or True)
    other_ca, _ = pki.create_ca(time.time(), name="Other CA")
    client = ApiClient(f"https://127.0.0.1:{srv.port}", other_ca)
    with pytest.raises(Unavailable, match="TLS verification"):
        client.request("GET", "/v1/x")


def test_refused_port_is_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ApiClient(f"https://127.0.0.1:{port}", None)
    with pytest.raises(Unavailable, match="cannot reach"):
        client.request("GET", "/v1/x")


def _nodelay(client: ApiClient) -> int:
    assert client._conn is not None
    return client._conn.raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_an_ip_literal_is_connected_to_directly_and_checked_as_an_ip(serve, tmp_path):
    _, client = serve(lambda c, r: c.sendall(ok()) or True)
    assert client.request("GET", "/v1/x") == {"ok": True}
    assert _nodelay(client)
    # A certificate that names only "localhost" does not vouch for 127.0.0.1.
    named = _certs(tmp_path, ["localhost"])
    other = Scripted(named, lambda c, r: c.sendall(ok()) or True)
    try:
        client = ApiClient(f"https://127.0.0.1:{other.port}", named[0])
        with pytest.raises(Unavailable, match="TLS verification"):
            client.request("GET", "/v1/x")
        assert other.requests == []
    finally:
        other.close()


def test_a_host_name_is_resolved_and_checked_against_the_certificate(certs, tmp_path):
    named = _certs(tmp_path, ["localhost"])
    srv = Scripted(named, lambda c, r: c.sendall(ok()) or True)
    ip_only = Scripted(certs, lambda c, r: c.sendall(ok()) or True)
    try:
        client = ApiClient(f"https://localhost:{srv.port}", named[0])
        assert client.request("GET", "/v1/x") == {"ok": True}
        assert _nodelay(client)
        assert f"Host: localhost:{srv.port}\r\n" in srv.requests[0].decode()
        client.close()
        # A certificate for 127.0.0.1 only does not vouch for the name "localhost".
        client = ApiClient(f"https://localhost:{ip_only.port}", certs[0])
        with pytest.raises(Unavailable, match="TLS verification"):
            client.request("GET", "/v1/x")
        assert ip_only.requests == []
    finally:
        srv.close()
        ip_only.close()


def test_an_ipv6_literal_is_connected_to_directly(tmp_path):
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            pass
    except OSError:
        pytest.skip("no IPv6 loopback here")
    six = _certs(tmp_path, ["::1"])
    srv = Scripted(six, lambda c, r: c.sendall(ok()) or True, host="::1")
    try:
        client = ApiClient(f"https://[::1]:{srv.port}", six[0])
        assert client.request("GET", "/v1/x") == {"ok": True}
        assert f"Host: [::1]:{srv.port}\r\n" in srv.requests[0].decode()
        client.close()
    finally:
        srv.close()


# Each fails before any packet leaves the machine: an empty label, a label over 63 bytes
# (both refused by the resolver itself), a non-ASCII label that IDNA cannot encode.
@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".invalid", "\u00fc" * 70 + ".invalid"])
def test_a_host_name_that_cannot_be_resolved_is_unavailable(host):
    client = ApiClient(f"https://{host}:8443", None)
    with pytest.raises(Unavailable, match="cannot reach"):
        client.request("GET", "/v1/x")


def test_header_and_path_injection_is_refused_before_sending(serve):
    srv, client = serve(lambda c, r: c.sendall(ok()) or True)
    with pytest.raises(NimbusError):
        client.raw("GET", "/v1/x", headers={"X-A": "1\r\nX-Injected: yes"})
    with pytest.raises(NimbusError):
        client.raw("GET", "/v1/x HTTP/1.1\r\nX-Injected: yes\r\n")
    assert srv.requests == []


@pytest.mark.parametrize(("url", "want"), [
    ("https://127.0.0.1:8443", ("127.0.0.1", 8443, "")),
    ("https://api.example:9000/base/", ("api.example", 9000, "/base")),
    ("https://[::1]:8443", ("::1", 8443, "")),
    ("https://node-1", ("node-1", 443, "")),
])
def test_split_url(url, want):
    assert split_url(url) == want


@pytest.mark.parametrize("url", ["http://127.0.0.1:8443", "https://", "https://h:99999",
                                 "https://h:x", "https://user@h:1", "https://[::1", "ftp://h",
                                 "https://h: 1", "https://h:1/?q=1", "https://h:1#x", "https://h:0"])
def test_split_url_refuses(url):
    with pytest.raises(NimbusError, match="API URL must look like"):
        split_url(url)
