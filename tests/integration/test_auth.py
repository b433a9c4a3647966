"""Operator authentication against the real server: every rejection rule of design.md §3.2."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
from typing import Any

import jwt
import pytest

from nimbus.security import hmac_sign as hs

# -- raw HTTP helpers (shared by the other integration test modules) ------------------------


class Raw:
    """Hand-built HTTPS requests, for attacks the CLI cannot express."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.ctx = ssl.create_default_context(cadata=server.ca_pem())

    def conn(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.server.port, context=self.ctx,
                                           timeout=30)

    def send(self, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        conn = self.conn()
        try:
            conn.request(method, path, body=body or None,
                         headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = data.decode(errors="replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, doc

    def signed(self, creds: dict[str, str], method: str, path: str, body: bytes = b"",
               now: float | None = None) -> dict[str, str]:
        return hs.sign_headers(creds["access_key"], creds["secret_key"], method, path, body,
                               time.time() if now is None else now)

    def hmac(self, creds: dict[str, str], method: str, path: str, body: Any = None,
             ) -> tuple[int, dict[str, str], Any]:
        raw = b"" if body is None else json.dumps(body).encode()
        return self.send(method, path, raw, self.signed(creds, method, path, raw))

    def bearer(self, token: str, method: str, path: str, body: Any = None,
               ) -> tuple[int, dict[str, str], Any]:
        raw = b"" if body is None else json.dumps(body).encode()
        return self.send(method, path, raw, {"Authorization": f"Bearer {token}"})

    def login(self, username: str, password: str) -> tuple[int, dict[str, str], Any]:
        body = json.dumps({"username": username, "password": password}).encode()
        return self.send("POST", "/v1/iam/login", body)


def jwt_secret(server: Any) -> bytes:
    return (server.data_dir / "jwt.key").read_text().strip().encode()


def b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def make_user(raw: Raw, admin_creds: dict, username: str, admin: bool = False,
              password: str | None = None) -> dict[str, Any]:
    """A user with an API key (and a password when given), created over HMAC."""
    status, _, doc = raw.hmac(admin_creds, "POST", "/v1/iam/users",
                              {"username": username, "admin": admin})
    assert status == 201, doc
    user = doc["data"]
    status, _, doc = raw.hmac(admin_creds, "POST", f"/v1/iam/users/{user['id']}/keys", {})
    assert status == 201, doc
    user["creds"] = {"access_key": doc["data"]["access_key"],
                     "secret_key": doc["data"]["secret_key"]}
    if password:
        status, _, doc = raw.hmac(admin_creds, "POST", f"/v1/iam/users/{user['id']}/password",
                                  {"password": password})
        assert status == 200, doc
    return user


def admin_user_id(raw: Raw, admin_creds: dict) -> str:
    status, _, doc = raw.hmac(admin_creds, "GET", "/v1/iam/users")
    assert status == 200
    return next(u["id"] for u in doc["data"] if u["username"] == "admin")


# -- fixtures -----------------------------------------------------------------------------

@pytest.fixture
def raw(server, admin) -> Raw:
    return Raw(server)


# -- HMAC ----------------------------------------------------------------------------------

def test_signed_request_is_accepted(raw, admin):
    status, _, doc = raw.hmac(admin, "GET", "/v1/iam/users")
    assert status == 200 and [u["username"] for u in doc["data"]] == ["admin"]


def test_unsigned_request_is_401(raw):
    status, _, doc = raw.send("GET", "/v1/iam/users")
    assert status == 401 and "authentication required" in doc["error"]


def test_incomplete_signature_headers_are_401(raw, admin):
    headers = raw.signed(admin, "GET", "/v1/iam/users")
    for missing in (hs.HEADER_SIGNATURE, hs.HEADER_NONCE, hs.HEADER_TIMESTAMP):
        partial = {k: v for k, v in headers.items() if k != missing}
        assert raw.send("GET", "/v1/iam/users", headers=partial)[0] == 401


def test_replayed_nonce_is_401(raw, admin):
    headers = raw.signed(admin, "GET", "/v1/iam/users")
    assert raw.send("GET", "/v1/iam/users", headers=headers)[0] == 200
    status, _, doc = raw.send("GET", "/v1/iam/users", headers=headers)
    assert status == 401 and "replay" in doc["error"]


def test_replay_of_a_rejected_request_does_not_burn_a_valid_nonce(raw, admin):
    headers = raw.signed(admin, "GET", "/v1/iam/users")
    bad = {**headers, hs.HEADER_SIGNATURE: "0" * 64}
    assert raw.send("GET", "/v1/iam/users", headers=bad)[0] == 401
    assert raw.send("GET", "/v1/iam/users", headers=headers)[0] == 200


def test_tampered_body_is_401(raw, admin):
    signed_body = json.dumps({"username": "alice"}).encode()
    headers = raw.signed(admin, "POST", "/v1/iam/users", signed_body)
    sent = json.dumps({"username": "alice", "admin": True}).encode()
    status, _, doc = raw.send("POST", "/v1/iam/users", sent, headers)
    assert status == 401 and "invalid signature" in doc["error"]
    # One byte is enough, and nothing was created.
    headers = raw.signed(admin, "POST", "/v1/iam/users", signed_body)
    assert raw.send("POST", "/v1/iam/users", signed_body.replace(b"e", b"E"), headers)[0] == 401
    users = raw.hmac(admin, "GET", "/v1/iam/users")[2]["data"]
    assert [u["username"] for u in users] == ["admin"]


def test_tampered_query_and_path_are_401(raw, admin):
    headers = raw.signed(admin, "GET", "/v1/nodes?limit=1")
    assert raw.send("GET", "/v1/nodes?limit=2", headers=headers)[0] == 401
    headers = raw.signed(admin, "GET", "/v1/nodes?limit=1")
    assert raw.send("GET", "/v1/nodes", headers=headers)[0] == 401
    headers = raw.signed(admin, "GET", "/v1/nodes")
    assert raw.send("GET", "/v1/nodes?x=1", headers=headers)[0] == 401
    headers = raw.signed(admin, "GET", "/v1/iam/users")
    assert raw.send("GET", "/v1/nodes", headers=headers)[0] == 401
    headers = raw.signed(admin, "GET", "/v1/nodes")
    assert raw.send("DELETE", "/v1/nodes", headers=headers)[0] in (401, 405)
    headers = raw.signed(admin, "GET", "/v1/nodes?limit=1")
    assert raw.send("GET", "/v1/nodes?limit=1", headers=headers)[0] == 200


def test_ten_minute_skew_is_401(raw, admin):
    for offset in (-600, 600):
        headers = raw.signed(admin, "GET", "/v1/iam/users", now=time.time() + offset)
        status, _, doc = raw.send("GET", "/v1/iam/users", headers=headers)
        assert status == 401 and "skew" in doc["error"]
    headers = raw.signed(admin, "GET", "/v1/iam/users", now=time.time() - 120)
    assert raw.send("GET", "/v1/iam/users", headers=headers)[0] == 200


def test_malformed_timestamp_and_nonce_are_401(raw, admin):
    headers = raw.signed(admin, "GET", "/v1/iam/users")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    assert raw.send("GET", "/v1/iam/users",
                    headers={**headers, hs.HEADER_TIMESTAMP: stamp})[0] == 401
    short = {**headers, hs.HEADER_NONCE: "abcd"}
    short[hs.HEADER_SIGNATURE] = hs.signature(admin["secret_key"], "GET", "/v1/iam/users",
                                              headers[hs.HEADER_TIMESTAMP], "abcd", b"")
    status, _, doc = raw.send("GET", "/v1/iam/users", headers=short)
    assert status == 401 and "nonce" in doc["error"]


def test_unknown_key_is_401(raw, admin):
    fake = {"access_key": "NBUSAAAAAAAAAAAAAAAA", "secret_key": admin["secret_key"]}
    status, _, doc = raw.hmac(fake, "GET", "/v1/iam/users")
    assert status == 401 and "unknown access key" in doc["error"]
    wrong_secret = {"access_key": admin["access_key"], "secret_key": "x" * 43}
    assert raw.hmac(wrong_secret, "GET", "/v1/iam/users")[0] == 401
    huge = {"access_key": "N" * 5000, "secret_key": "x"}
    assert raw.hmac(huge, "GET", "/v1/iam/users")[0] in (400, 401, 431)


# -- JWT -----------------------------------------------------------------------------------

def _token(raw: Raw, creds: dict) -> str:
    status, _, doc = raw.hmac(creds, "POST", "/v1/iam/token", {})
    assert status == 200, doc
    return doc["data"]["token"]


def test_token_from_hmac_works_and_cannot_mint_more_tokens(raw, admin):
    token = _token(raw, admin)
    assert raw.bearer(token, "GET", "/v1/iam/users")[0] == 200
    status, _, doc = raw.bearer(token, "POST", "/v1/iam/token", {})
    assert status == 403 and "HMAC" in doc["error"]


def test_forged_jwt_is_401(raw, admin):
    claims = jwt.decode(_token(raw, admin), options={"verify_signature": False})
    forged = jwt.encode({**claims, "jti": "x"}, b"not-the-server-secret" * 3, algorithm="HS256")
    status, _, doc = raw.bearer(forged, "GET", "/v1/iam/users")
    assert status == 401 and doc["error"] == "invalid token"


def test_alg_none_jwt_is_401(raw, admin):
    claims = jwt.decode(_token(raw, admin), options={"verify_signature": False})
    for alg in ("none", "None"):
        token = f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims)}."
        assert raw.bearer(token, "GET", "/v1/iam/users")[0] == 401


def test_other_algorithm_with_the_right_secret_is_401(raw, server, admin):
    claims = jwt.decode(_token(raw, admin), options={"verify_signature": False})
    token = jwt.encode(claims, jwt_secret(server), algorithm="HS512")
    assert raw.bearer(token, "GET", "/v1/iam/users")[0] == 401


def test_expired_jwt_is_401(raw, server, admin):
    claims = jwt.decode(_token(raw, admin), options={"verify_signature": False})
    now = int(time.time())
    expired = jwt.encode({**claims, "iat": now - 7200, "exp": now - 10}, jwt_secret(server),
                         algorithm="HS256")
    status, _, doc = raw.bearer(expired, "GET", "/v1/iam/users")
    assert status == 401 and "expired" in doc["error"]
    # The same crafted token, still valid, proves the secret was right.
    fresh = jwt.encode({**claims, "iat": now, "exp": now + 60}, jwt_secret(server),
                       algorithm="HS256")
    assert raw.bearer(fresh, "GET", "/v1/iam/users")[0] == 200


def test_jwt_missing_a_claim_is_401(raw, server, admin):
    claims = jwt.decode(_token(raw, admin), options={"verify_signature": False})
    for claim in ("ver", "exp", "jti", "sub"):
        token = jwt.encode({k: v for k, v in claims.items() if k != claim}, jwt_secret(server),
                           algorithm="HS256")
        assert raw.bearer(token, "GET", "/v1/iam/users")[0] == 401, claim


def test_bad_authorization_headers_are_401(raw):
    for value in ("Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer ", "Bearer not.a.jwt",
                  "Bearer " + "a" * 5000):
        status, _, doc = raw.send("GET", "/v1/iam/users", headers={"Authorization": value})
        assert status == 401, value
        assert isinstance(doc, dict) and doc["error"]


def test_deleted_users_key_and_token_stop_working(raw, admin):
    bob = make_user(raw, admin, "bob", admin=True)
    token = _token(raw, bob["creds"])
    assert raw.hmac(bob["creds"], "GET", "/v1/iam/users")[0] == 200
    assert raw.bearer(token, "GET", "/v1/iam/users")[0] == 200
    assert raw.hmac(admin, "DELETE", f"/v1/iam/users/{bob['id']}")[0] == 200
    status, _, doc = raw.hmac(bob["creds"], "GET", "/v1/iam/users")
    assert status == 401
    status, _, doc = raw.bearer(token, "GET", "/v1/iam/users")
    assert status == 401 and "no longer valid" in doc["error"]


def test_deleted_key_stops_working_at_once(raw, admin):
    carol = make_user(raw, admin, "carol")
    key = carol["creds"]["access_key"]
    assert raw.hmac(carol["creds"], "GET", f"/v1/iam/users/{carol['id']}")[0] == 200
    status, _, _ = raw.hmac(admin, "DELETE", f"/v1/iam/users/{carol['id']}/keys/{key}")
    assert status == 200
    assert raw.hmac(carol["creds"], "GET", f"/v1/iam/users/{carol['id']}")[0] == 401


def test_token_stops_working_after_a_password_change(raw, admin):
    dave = make_user(raw, admin, "dave", password="first-password")
    status, _, doc = raw.login("dave", "first-password")
    assert status == 200
    token = doc["data"]["token"]
    assert raw.bearer(token, "GET", f"/v1/iam/users/{dave['id']}")[0] == 200
    status, _, _ = raw.bearer(token, "POST", f"/v1/iam/users/{dave['id']}/password",
                              {"password": "second-password"})
    assert status == 400  # a bearer token alone cannot change the password (issue 9)
    status, _, _ = raw.bearer(token, "POST", f"/v1/iam/users/{dave['id']}/password",
                              {"password": "second-password",
                               "current_password": "first-password"})
    assert status == 200
    status, _, doc = raw.bearer(token, "GET", f"/v1/iam/users/{dave['id']}")
    assert status == 401 and "no longer valid" in doc["error"]
    assert raw.login("dave", "first-password")[0] == 401
    assert raw.login("dave", "second-password")[0] == 200


# -- authorization -------------------------------------------------------------------------

def test_non_admin_cannot_create_users_or_touch_others(raw, admin):
    erin = make_user(raw, admin, "erin")
    status, _, doc = raw.hmac(erin["creds"], "POST", "/v1/iam/users", {"username": "mallory"})
    assert status == 403 and "admin" in doc["error"]
    admin_id = admin_user_id(raw, admin)
    assert raw.hmac(erin["creds"], "GET", "/v1/iam/users")[0] == 403
    assert raw.hmac(erin["creds"], "POST", f"/v1/iam/users/{admin_id}/keys", {})[0] == 403
    assert raw.hmac(erin["creds"], "POST", f"/v1/iam/users/{admin_id}/password",
                    {"password": "taken-over!"})[0] == 403
    assert raw.hmac(erin["creds"], "DELETE", f"/v1/iam/users/{admin_id}")[0] == 403
    assert raw.hmac(erin["creds"], "POST", "/v1/nodes", {"ip_address": "192.0.2.1"})[0] == 403
    # …but may read and manage its own credentials.
    assert raw.hmac(erin["creds"], "GET", "/v1/nodes")[0] == 200
    status, _, doc = raw.hmac(erin["creds"], "POST", f"/v1/iam/users/{erin['id']}/keys", {})
    assert status == 201
    assert raw.hmac(erin["creds"], "POST", f"/v1/iam/users/{erin['id']}/password",
                    {"password": "my-own-password"})[0] == 200


# -- passwords and throttling --------------------------------------------------------------

def test_wrong_password_and_unknown_user_are_the_same_401(raw, admin):
    make_user(raw, admin, "frank", password="right-password")
    s1, _, d1 = raw.login("frank", "wrong-password")
    s2, _, d2 = raw.login("nobody", "wrong-password")
    assert s1 == s2 == 401 and d1 == d2 == {"error": "invalid username or password"}
    user_without_password = make_user(raw, admin, "gina")
    assert raw.login(user_without_password["username"], "")[0] in (400, 401)
    assert raw.login("gina", "anything-at-all")[0] == 401


def test_sixth_failed_login_is_429_with_retry_after(raw, admin):
    make_user(raw, admin, "hank", password="right-password")
    for _ in range(5):
        assert raw.login("hank", "wrong-password")[0] == 401
    status, headers, doc = raw.login("hank", "wrong-password")
    assert status == 429 and "too many" in doc["error"]
    assert 1 <= int(headers["retry-after"]) <= 900
    # Throttled means throttled: even the right password waits.
    assert raw.login("hank", "right-password")[0] == 429
    assert raw.login("HANK", "right-password")[0] == 429
    # Other users are not locked out by hank's attacker.
    make_user(raw, admin, "ivy", password="right-password")
    assert raw.login("ivy", "right-password")[0] == 200


def test_a_burst_from_one_source_is_throttled(raw, admin):
    make_user(raw, admin, "judy", password="right-password")
    statuses = [raw.login(f"spray{i}", "guess-password")[0] for i in range(20)]
    assert statuses == [401] * 20  # different names: the per-user limit never triggers
    status, headers, _ = raw.login("spray-final", "guess-password")
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert raw.login("judy", "right-password")[0] == 429
