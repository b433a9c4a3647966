"""Bearer JWTs: HS256 with our secret only, complete claims, bound to the user's credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.security.helpers import raw


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _hs256(claims, key: bytes) -> str:
    """Signed by hand: pyjwt itself refuses PEM material as an HMAC key."""
    head = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    sig = hmac.new(key, head.encode(), hashlib.sha256).digest()
    return f"{head}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def bearer(server, token, path="/v1/nodes"):
    return raw(server, "GET", path, headers={"Authorization": f"Bearer {token}"})[0]


@pytest.fixture
def login(server, ops):
    def make(name="alice", admin=False):
        user = ops.request("POST", "/v1/iam/users", {"username": name, "admin": admin})
        ops.request("POST", f"/v1/iam/users/{user['id']}/password", {"password": "correct horse"})
        token = ops.request("POST", "/v1/iam/login",
                            {"username": name, "password": "correct horse"})["token"]
        return user, token
    return make


def test_a_valid_token_is_accepted(server, login):
    _, token = login()
    assert bearer(server, token) == 200


def test_forged_and_incomplete_tokens_are_refused(server, login):
    _, token = login()
    claims = jwt.decode(token, options={"verify_signature": False})
    secret = (server.data_dir / "jwt.key").read_text().strip().encode()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    without = lambda *names: {k: v for k, v in claims.items() if k not in names}  # noqa: E731
    forged = {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "alg none, original signature": f"{_b64({'alg': 'none', 'typ': 'JWT'})}."
                                        f"{_b64(claims)}.{token.split('.')[2]}",
        "RS256 with an attacker key": jwt.encode(claims, rsa_key, algorithm="RS256"),
        "HS256 keyed with the public CA certificate": _hs256(claims, server.ca_pem().encode()),
        "header alg RS256 over an HS256 signature": f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}."
                                                    f"{token.split('.', 1)[1]}",
        "HS512 with the real secret": jwt.encode(claims, secret, algorithm="HS512"),
        "wrong key": jwt.encode(claims, b"x" * 64, algorithm="HS256"),
        "missing exp": jwt.encode(without("exp"), secret, algorithm="HS256"),
        "missing sub": jwt.encode(without("sub"), secret, algorithm="HS256"),
        "missing ver": jwt.encode(without("ver"), secret, algorithm="HS256"),
        "sub differs from uid": jwt.encode({**claims, "sub": "user-0000000000000000"}, secret,
                                           algorithm="HS256"),
        "expired": jwt.encode({**claims, "iat": now - 7200, "exp": now - 10}, secret,
                              algorithm="HS256"),
        "adm raised in the payload": f"{token.split('.')[0]}."
                                     f"{_b64({**claims, 'adm': True})}.{token.split('.')[2]}",
        "truncated": token[:-3],
        "huge": "a" * 10000,
    }
    for label, bad in forged.items():
        assert bearer(server, bad) == 401, label
    assert bearer(server, token) == 200  # the real one still works


def test_token_issued_before_a_password_change_is_refused(server, ops, login):
    user, token = login()
    ops.request("POST", f"/v1/iam/users/{user['id']}/password", {"password": "battery staple"})
    assert bearer(server, token) == 401


def test_token_of_a_deleted_user_is_refused(server, ops, login):
    user, token = login("bob", admin=True)
    assert bearer(server, token, "/v1/iam/users") == 200
    ops.request("DELETE", f"/v1/iam/users/{user['id']}")
    assert bearer(server, token, "/v1/iam/users") == 401


def test_non_admin_token_cannot_act_as_admin(server, login):
    _, token = login()
    assert bearer(server, token, "/v1/iam/users") == 403
    status, _, _ = raw(server, "POST", "/v1/nodes", b'{"ip_address": "192.0.2.1"}',
                       {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert status == 403


def test_bearer_cannot_mint_more_tokens(server, login):
    _, token = login()
    status, _, _ = raw(server, "POST", "/v1/iam/token", b"{}",
                       {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert status == 403


def test_bearer_plus_hmac_headers_is_refused_not_half_checked(server, login):
    _, token = login()
    for header in ("X-Access-Key", "X-Timestamp", "X-Nonce", "X-Signature"):
        status, _, body = raw(server, "GET", "/v1/nodes",
                              headers={"Authorization": f"Bearer {token}", header: "junk"})
        assert status == 401 and b"not both" in body, header


@pytest.fixture
def key_token(server, ops):
    """A user with an API key and a JWT minted with that key (POST /v1/iam/token)."""
    from tests.security.helpers import operator

    user = ops.request("POST", "/v1/iam/users", {"username": "kim", "admin": True})
    key = ops.request("POST", f"/v1/iam/users/{user['id']}/keys", {})
    token = operator(server, key).request("POST", "/v1/iam/token", {})["token"]
    return user, key, token


def test_a_token_minted_with_a_key_names_that_key(key_token):
    _, key, token = key_token
    assert jwt.decode(token, options={"verify_signature": False})["akid"] == key["access_key"]


def test_a_token_minted_with_a_key_dies_with_the_key(server, ops, key_token):
    user, key, token = key_token
    for _ in range(3):  # verified once, then served from the verified-token cache
        assert bearer(server, token) == 200
    ops.request("DELETE", f"/v1/iam/users/{user['id']}/keys/{key['access_key']}")
    assert bearer(server, token) == 401
    status, _, _ = raw(server, "POST", "/v1/nodes", b'{"ip_address": "192.0.2.1"}',
                       {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert status == 401


def test_deleting_another_key_leaves_a_token_alone(server, ops, key_token):
    user, _, token = key_token
    other = ops.request("POST", f"/v1/iam/users/{user['id']}/keys", {})
    ops.request("DELETE", f"/v1/iam/users/{user['id']}/keys/{other['access_key']}")
    assert bearer(server, token) == 200


def test_a_forged_key_binding_is_refused(server, ops, key_token):
    """Even with the signing secret, akid must name a live key of the token's own user."""
    _, _, token = key_token
    claims = jwt.decode(token, options={"verify_signature": False})
    secret = (server.data_dir / "jwt.key").read_text().strip().encode()
    admin_key = next(iter(ops.request("GET", "/v1/iam/users/" + ops.request(
        "GET", "/v1/iam/users")[0]["id"] + "/keys")))["access_key"]
    for akid in (admin_key, "NBUS0000000000000000", 7, None, ["x"]):
        forged = jwt.encode({**claims, "akid": akid}, secret, algorithm="HS256")
        assert bearer(server, forged) == 401, akid
