"""Node certificates: what they say, what they cannot be used for, and revocation."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nimbus.client import ApiClient
from nimbus.errors import Unauthorized
from nimbus.security.pki import make_csr
from tests.security.helpers import add_node, join, join_body, raw


def test_node_certificate_is_a_short_lived_client_only_leaf_named_after_the_node(
        server, ops, tmp_path):
    _, fields, _ = add_node(ops)
    node = join(server, fields, tmp_path / "n")
    cert = x509.load_pem_x509_certificate(node.cert_pem.encode())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == fields["node_id"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert not usage.key_cert_sign and not usage.crl_sign
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.total_seconds() <= 30 * 86400 + 600  # default 30 days (+5 min backdating)
    ca = x509.load_pem_x509_certificate(server.ca_pem().encode())
    cert.verify_directly_issued_by(ca)


def test_server_ignores_the_subject_the_node_asks_for(server, ops, tmp_path):
    _, fields, _ = add_node(ops)
    csr, _ = make_csr("node-ffffffffffffffff")  # asks for somebody else's identity
    data = ApiClient(server.url, fields["ca_pem"]).request(
        "POST", "/v1/nodes/join", join_body(fields, csr))
    cert = x509.load_pem_x509_certificate(data["cert_pem"].encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == fields["node_id"]


def test_node_certificate_cannot_serve_tls(server, ops, tmp_path):
    _, fields, _ = add_node(ops)
    node = join(server, fields, tmp_path / "n")
    srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv_ctx.load_cert_chain(node.cert_file, node.key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        conn, _ = listener.accept()
        try:
            with srv_ctx.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cadata=server.ca_pem())
    client_ctx.check_hostname = False  # only the chain and its purpose are under test
    with socket.create_connection(("127.0.0.1", port)) as sock, \
            pytest.raises(ssl.SSLCertVerificationError, match="purpose"):
        client_ctx.wrap_socket(sock, server_hostname=fields["node_id"])
    thread.join(5)
    listener.close()


def test_node_certificate_is_not_an_operator_credential(server, ops, tmp_path):
    _, fields, _ = add_node(ops)
    node = join(server, fields, tmp_path / "n")
    cert = (node.cert_file, node.key_file)
    for method, path, body in (("GET", "/v1/nodes", b""), ("GET", "/v1/iam/users", b""),
                               ("POST", "/v1/nodes", b'{"ip_address": "192.0.2.99"}'),
                               ("DELETE", f"/v1/nodes/{fields['node_id']}", b""),
                               ("POST", "/v1/iam/token", b"{}"), ("GET", "/v1/audit", b"")):
        status, _, _ = raw(server, method, path, body, {"Content-Type": "application/json"},
                           cert=cert)
        assert status == 401, (method, path)
    # ...while the same certificate is accepted where a node is expected.
    assert node.client(server).request("POST", "/v1/internal/heartbeat", {}) is not None


def test_revocation_is_immediate_survives_restart_and_blocks_renewal(server, ops, tmp_path):
    _, fa, _ = add_node(ops, name="a")
    _, fb, _ = add_node(ops, name="b", ip="192.0.2.11")
    a = join(server, fa, tmp_path / "a")
    b = join(server, fb, tmp_path / "b")
    client = a.client(server)
    client.request("POST", "/v1/internal/heartbeat", {})
    # Renew once, so the node holds two valid certificates; both must die with it.
    renewed_csr, renewed_key = make_csr(a.node_id)
    renewed = client.request("POST", "/v1/internal/renew", {"csr": renewed_csr})
    (tmp_path / "a2.crt").write_text(renewed["cert_pem"])
    (tmp_path / "a2.key").write_text(renewed_key)
    second = ApiClient(server.url, server.ca_pem(), cert_file=str(tmp_path / "a2.crt"),
                       key_file=str(tmp_path / "a2.key"))
    second.request("POST", "/v1/internal/heartbeat", {})

    ops.request("DELETE", f"/v1/nodes/{a.node_id}")
    # Immediate: the very same kept-alive connection is refused on its next request.
    for c in (client, second):
        with pytest.raises(Unauthorized):
            c.request("POST", "/v1/internal/heartbeat", {})
        with pytest.raises(Unauthorized):
            c.request("POST", "/v1/internal/renew", {"csr": make_csr(a.node_id)[0]})
        with pytest.raises(Unauthorized):
            c.request("GET", f"/v1/internal/tasks/{a.node_id}")
    revoked = set((server.data_dir / "store" / "revoked.json").read_text().split('"'))
    assert {x509.load_pem_x509_certificate(p.encode()).serial_number
            for p in (a.cert_pem, renewed["cert_pem"])} <= {
        int(s, 16) for s in revoked if s and all(ch in "0123456789abcdef" for ch in s)}

    server.stop()
    server.start()
    for c in (ApiClient(server.url, server.ca_pem(), cert_file=a.cert_file, key_file=a.key_file),
              ApiClient(server.url, server.ca_pem(), cert_file=str(tmp_path / "a2.crt"),
                        key_file=str(tmp_path / "a2.key"))):
        with pytest.raises(Unauthorized):
            c.request("POST", "/v1/internal/heartbeat", {})
        with pytest.raises(Unauthorized):
            c.request("POST", "/v1/internal/renew", {"csr": make_csr(a.node_id)[0]})
    # The other node is untouched.
    assert b.client(server).request("POST", "/v1/internal/heartbeat", {})
