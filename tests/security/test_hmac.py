"""HMAC request signing: every signed part is covered, skew is bounded, nonces are single use."""

from __future__ import annotations

import io
import secrets
import time

import pytest

from nimbus.config import ServerConfig
from nimbus.errors import Unauthorized
from nimbus.security import hmac_sign as hs
from nimbus.server import iam
from nimbus.server.authn import Authenticator
from nimbus.server.boot import open_state
from tests.security.helpers import raw

JSON = {"Content-Type": "application/json"}


def signed(creds, method, path, body=b"", now=None, nonce=None):
    ts = hs.format_timestamp(time.time() if now is None else now)
    nonce = nonce or secrets.token_hex(16)
    return {**JSON, hs.HEADER_KEY: creds["access_key"], hs.HEADER_TIMESTAMP: ts,
            hs.HEADER_NONCE: nonce,
            hs.HEADER_SIGNATURE: hs.signature(creds["secret_key"], method, path, ts, nonce, body)}


def test_a_correct_signature_is_accepted(server, admin):
    headers = signed(admin, "GET", "/v1/nodes?limit=1")
    assert raw(server, "GET", "/v1/nodes?limit=1", headers=headers)[0] == 200


MUTATIONS = ["method", "path", "query", "timestamp", "nonce", "access_key", "body", "signature"]


@pytest.mark.parametrize("part", MUTATIONS)
def test_changing_any_signed_part_is_refused(server, admin, ops, part):
    other = ops.request("POST", f"/v1/iam/users/{admin_id(ops)}/keys", {})
    method, path, body = "POST", "/v1/iam/users?x=1", b'{"username": "alice"}'
    headers = signed(admin, method, path, body)
    if part == "method":  # signed as DELETE, sent as GET
        method, path, body = "GET", "/v1/iam/users?x=1", b""
        headers = signed(admin, "DELETE", path, body)
    elif part == "path":
        path = "/v1/nodes?x=1"
    elif part == "query":
        path = "/v1/iam/users?x=2"
    elif part == "timestamp":
        headers[hs.HEADER_TIMESTAMP] = hs.format_timestamp(time.time() - 1)
    elif part == "nonce":
        headers[hs.HEADER_NONCE] = secrets.token_hex(16)
    elif part == "access_key":
        headers[hs.HEADER_KEY] = other["access_key"]
    elif part == "body":
        body = b'{"username": "mallory"}'
    elif part == "signature":
        headers[hs.HEADER_SIGNATURE] = headers[hs.HEADER_SIGNATURE][:-1] + (
            "0" if headers[hs.HEADER_SIGNATURE][-1] != "0" else "1")
    status, _, reply = raw(server, method, path, body, headers)
    assert status == 401, (part, reply)
    assert [u["username"] for u in ops.request("GET", "/v1/iam/users")] == ["admin"]


def admin_id(ops):
    return ops.request("GET", "/v1/iam/users")[0]["id"]


def test_replayed_request_is_refused(server, admin, ops):
    body = b'{"username": "once"}'
    headers = signed(admin, "POST", "/v1/iam/users", body)
    assert raw(server, "POST", "/v1/iam/users", body, headers)[0] == 201
    ops.request("DELETE", f"/v1/iam/users/{_user_id(ops, 'once')}")
    status, _, reply = raw(server, "POST", "/v1/iam/users", body, headers)
    assert status == 401 and b"replay" in reply
    assert _user_id(ops, "once") is None


def _user_id(ops, name):
    return next((u["id"] for u in ops.request("GET", "/v1/iam/users") if u["username"] == name),
                None)


def test_deleted_key_is_refused_at_once(server, admin, ops):
    key = ops.request("POST", f"/v1/iam/users/{admin_id(ops)}/keys", {})
    assert raw(server, "GET", "/v1/nodes", headers=signed(key, "GET", "/v1/nodes"))[0] == 200
    ops.request("DELETE", f"/v1/iam/users/{admin_id(ops)}/keys/{key['access_key']}")
    assert raw(server, "GET", "/v1/nodes", headers=signed(key, "GET", "/v1/nodes"))[0] == 401


@pytest.fixture
def clocked(tmp_path):
    now = [1_800_000_000.0]
    config = ServerConfig(data_dir=str(tmp_path / "data"), wireguard=False).validate()
    state = open_state(config, clock=lambda: now[0])
    creds = iam.bootstrap(state, via="test")
    return Authenticator(state), creds, now


def _environ(creds, stamp, path="/v1/nodes", nonce=None):
    headers = signed(creds, "GET", path, b"", now=stamp, nonce=nonce)
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path,
           "wsgi.input": io.BytesIO(b"")}
    for name, value in headers.items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


@pytest.mark.parametrize(("skew", "accepted"), [(0, True), (-299, True), (299, True),
                                                (300, True), (-300, True), (301, False),
                                                (-301, False), (-86400, False)])
def test_timestamp_skew_boundary_with_a_controlled_clock(clocked, skew, accepted):
    authn, creds, now = clocked
    env = _environ(creds, now[0] + skew)
    if accepted:
        assert authn.operator(env, b"").username == "admin"
    else:
        with pytest.raises(Unauthorized, match="skew"):
            authn.operator(env, b"")


def test_nonce_is_remembered_for_the_whole_skew_window(clocked):
    authn, creds, now = clocked
    nonce = secrets.token_hex(16)
    # Signed 300 s in the future: valid now, and still valid until 300 s after its stamp.
    env = _environ(creds, now[0] + 300, nonce=nonce)
    authn.operator(env, b"")
    for step in (1, 300, 599):
        now[0] = 1_800_000_000.0 + step
        with pytest.raises(Unauthorized):
            authn.operator(_environ(creds, 1_800_000_300.0, nonce=nonce), b"")


def test_short_or_malformed_nonce_is_refused(clocked):
    authn, creds, now = clocked
    for nonce in ("00", "ABCDEF" * 6, "g" * 32):
        with pytest.raises(Unauthorized):
            authn.operator(_environ(creds, now[0], nonce=nonce), b"")
