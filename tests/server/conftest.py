"""The in-process tier: `create_app` and the services behind it, no process, no TLS.

Each test gets its own data dir and a clock it can move; requests go through the real
WSGI application (routing, authentication, validation, the error table), so only the
socket and the TLS handshake are left out (those are tests/integration's).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nimbus import wire
from nimbus.config import ServerConfig
from nimbus.security.pki import make_csr
from nimbus.security.wgkeys import generate_keypair
from nimbus.server import enroll, nodes
from nimbus.server.app import create_app
from nimbus.server.boot import open_state
from nimbus.server.state import State


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Answer:
    status: int
    body: Any


@dataclass
class InProcess:
    state: State
    clock: Clock
    app: Any

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             cert_pem: str | None = None, source: str = "127.0.0.1") -> Answer:
        """One request through the WSGI app; `cert_pem` is a verified client certificate."""
        raw = json.dumps(body).encode() if body is not None else b""
        path, _, query = path.partition("?")
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                   "REQUEST_URI": path, "REMOTE_ADDR": source, "SERVER_NAME": "test",
                   "SERVER_PORT": "8443", "SERVER_PROTOCOL": "HTTP/1.1",
                   "CONTENT_LENGTH": str(len(raw)), "CONTENT_TYPE": "application/json",
                   "wsgi.input": io.BytesIO(raw), "wsgi.url_scheme": "https",
                   "wsgi.errors": io.StringIO()}
        if cert_pem is not None:
            environ.update(SSL_CLIENT_CERT=cert_pem, SSL_CLIENT_VERIFY="SUCCESS")
        status: list[str] = []
        chunks = self.app(environ, lambda s, headers, exc=None: status.append(s))
        data = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()  # runs what a handler does after the answer was sent
        return Answer(int(status[0].split()[0]), json.loads(data) if data else None)

    def joined_node(self, ip: str = "192.0.2.10") -> tuple[str, str]:
        """(node ID, client certificate PEM) of a node added and joined in-process."""
        created = nodes.create(self.state, ip, None, actor="test")
        fields = wire.decode_join_token(created["join_token"])
        csr, _key = make_csr(fields["node_id"])
        body = wire.build(wire.JOIN_REQUEST, node_id=fields["node_id"],
                          secret=fields["secret"], csr=csr,
                          wireguard_public_key=generate_keypair()[1])
        answer, after_sent = enroll.join(self.state, body, "127.0.0.1")
        after_sent()
        return fields["node_id"], answer["cert_pem"]


@pytest.fixture
def inproc(tmp_path: Path) -> InProcess:
    clock = Clock()
    config = ServerConfig(data_dir=str(tmp_path / "data"), wireguard=False).validate()
    state = open_state(config, clock=clock, monotonic=clock)  # one clock moves both
    return InProcess(state, clock, create_app(state))
