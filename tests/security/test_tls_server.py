"""The server's TLS: what a new connection costs must not change who is trusted.

The server sends no TLS 1.3 session tickets (no Nimbus client resumes, and they delay every
new connection's first answer) and builds each connection's WSGI TLS entries itself, leaner
than cheroot's: these tests hold the security of both. A client certificate reaches the
API only when it chains to our CA; TLS below 1.2 is refused; fresh connections, one request
each, are served one after another.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from nimbus.client import ApiClient, HmacAuth, tls_context
from nimbus.security import pki
from nimbus.server.http.httpd import server_tls_context, tls_environ
from tests.harness import Server


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory) -> dict[str, Any]:
    now = time.time()
    d = tmp_path_factory.mktemp("tls-server")
    ca_pem, ca_key = pki.create_ca(now)
    cert, key = pki.create_server_cert(ca_pem, ca_key, ["127.0.0.1"], now)
    for name, text in (("ca.crt", ca_pem), ("s.crt", cert), ("s.key", key)):
        (d / name).write_text(text)
    files = {"dir": d, "ca_pem": ca_pem}
    for who, (issuer_pem, issuer_key) in (("node", (ca_pem, ca_key)),
                                          ("stranger", pki.create_ca(now, name="Other CA"))):
        csr, node_key = pki.make_csr("node-x")
        node_cert, _, _ = pki.sign_client_csr(issuer_pem, issuer_key, csr, "node-x", 3600, now)
        (d / f"{who}.crt").write_text(node_cert)
        (d / f"{who}.key").write_text(node_key)
        files[who] = node_cert
    return files


def handshake(files: dict[str, Any], client_cert: str | None = None
              ) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """(server side, client side) of one TLS connection over a socket pair."""
    d: Path = files["dir"]
    server_ctx = server_tls_context(d / "s.crt", d / "s.key", d / "ca.crt")
    if client_cert is None:
        client_ctx = tls_context(files["ca_pem"])
    else:
        client_ctx = tls_context(files["ca_pem"], str(d / f"{client_cert}.crt"),
                                 str(d / f"{client_cert}.key"))
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    box: dict[str, Any] = {}

    def serve() -> None:
        try:
            box["sock"] = server_ctx.wrap_socket(a, server_side=True)
            box["sock"].recv(1)  # TLS 1.3: the client's certificate is checked here
        except (OSError, ssl.SSLError) as exc:
            box["error"] = exc
            a.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        client = client_ctx.wrap_socket(b, server_hostname="127.0.0.1")
        client.sendall(b"x")
    except (OSError, ssl.SSLError):
        b.close()
        t.join()
        raise
    t.join()
    if "error" in box:
        client.close()
        raise box["error"]
    return box["sock"], client


def test_a_connection_without_a_client_certificate_carries_none(pki_files):
    server, client = handshake(pki_files)
    try:
        env = tls_environ(server)
        assert env["HTTPS"] == "on" and env["wsgi.url_scheme"] == "https"
        assert env["SSL_PROTOCOL"] == "TLSv1.3" and env["SSL_CIPHER"]
        assert env["SSL_CLIENT_VERIFY"] == "NONE"
        assert "SSL_CLIENT_CERT" not in env
    finally:
        server.close()
        client.close()


def test_a_node_certificate_from_our_ca_reaches_the_api(pki_files):
    server, client = handshake(pki_files, "node")
    try:
        env = tls_environ(server)
        assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
        assert pki.cert_info(env["SSL_CLIENT_CERT"]) == pki.cert_info(pki_files["node"])
    finally:
        server.close()
        client.close()


def test_a_certificate_from_another_ca_is_refused_in_the_handshake(pki_files):
    with pytest.raises((ssl.SSLError, OSError)):
        server, client = handshake(pki_files, "stranger")
        server.close()
        client.close()


def test_the_server_sends_no_session_tickets(pki_files):
    server, client = handshake(pki_files)
    try:
        server.sendall(b"answer")
        assert client.recv(16) == b"answer"  # anything sent before it has been read too
        assert client.session is not None and not client.session.has_ticket
    finally:
        server.close()
        client.close()


def _client_for(server: Server, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=server.ca_pem())
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that this client itself would speak TLS 1.1
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def test_tls_1_2_is_served_and_older_versions_are_refused(server: Server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            _client_for(server, ssl.TLSVersion.TLSv1_2).wrap_socket(
                raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert tls.recv(64).startswith(b"HTTP/1.1 200")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = _client_for(server, ssl.TLSVersion.TLSv1_1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            pytest.raises(ssl.SSLError, match=r"(?i)alert protocol version"):
        old.wrap_socket(raw, server_hostname="127.0.0.1")


def test_fresh_connections_each_get_their_answer(server: Server, admin: dict[str, Any]):
    """What every CLI command does: a new connection, one signed request, close."""
    for _ in range(20):
        client = ApiClient(server.url, admin["tls_ca"],
                           auth=HmacAuth(admin["access_key"], admin["secret_key"]))
        try:
            assert client.request("GET", "/v1/nodes") == []
            assert client._conn is not None
            assert not client._conn.tls.session.has_ticket
        finally:
            client.close()
