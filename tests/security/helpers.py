"""Shared helpers for the security tests: API clients, node add + join over the real API."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nimbus import wire
from nimbus.client import ApiClient, HmacAuth, tls_context
from nimbus.security.pki import make_csr
from nimbus.security.wgkeys import generate_keypair
from tests.harness import Server


def operator(server: Server, creds: dict[str, Any]) -> ApiClient:
    """An HMAC-signing client for the credentials of a connection config or key."""
    return ApiClient(server.url, server.ca_pem(),
                     auth=HmacAuth(creds["access_key"], creds.get("secret_key", "")))


def anonymous(server: Server) -> ApiClient:
    return ApiClient(server.url, server.ca_pem())


def raw(server: Server, method: str, path: str, body: bytes = b"",
        headers: dict[str, str] | None = None, cert: tuple[str, str] | None = None
        ) -> tuple[int, dict[str, str], bytes]:
    """One request exactly as given (no signing, no JSON encoding) on a fresh connection."""
    ctx = tls_context(server.ca_pem(), *(cert or (None, None)))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def add_node(client: ApiClient, ip: str = "192.0.2.10", name: str | None = None
             ) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(node, decoded join token fields, join token string)."""
    body: dict[str, Any] = {"ip_address": ip}
    if name:
        body["name"] = name
    data = client.request("POST", "/v1/nodes", body)
    token = data["join_token"]
    return data["node"], wire.decode_join_token(token), token


@dataclass
class Joined:
    node_id: str
    cert_file: str
    key_file: str
    cert_pem: str
    key_pem: str
    response: dict[str, Any]

    def client(self, server: Server) -> ApiClient:
        return ApiClient(server.url, server.ca_pem(), cert_file=self.cert_file,
                         key_file=self.key_file)


def join_body(fields: dict[str, Any], csr: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"node_id": fields["node_id"], "secret": fields["secret"],
            "csr": csr or make_csr(fields["node_id"])[0], "hostname": "host-1", "arch": "x86_64",
            "agent_version": "0.1.0", "wireguard_public_key": generate_keypair()[1], **extra}


def join(server: Server, fields: dict[str, Any], where: Path) -> Joined:
    """Join as an agent would: CSR with a key that stays here, verified against the token CA."""
    csr, key_pem = make_csr(fields["node_id"])
    client = ApiClient(server.url, fields["ca_pem"])
    data = client.request("POST", "/v1/nodes/join", join_body(fields, csr))
    where.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = where / f"{fields['node_id']}.crt", where / f"{fields['node_id']}.key"
    cert_file.write_text(data["cert_pem"])
    key_file.write_text(key_pem)
    key_file.chmod(0o600)
    return Joined(fields["node_id"], str(cert_file), str(key_file), data["cert_pem"], key_pem,
                  data)


def store_doc(server: Server, name: str) -> dict[str, Any]:
    path = server.data_dir / "store" / f"{name}.json"
    return json.loads(path.read_text())["data"] if path.exists() else {}


def insecure_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
