"""JWT bearer tokens: HS256 only, expiry, required claims, no algorithm confusion."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nimbus.errors import Unauthorized
from nimbus.security import tokens

SECRET = b"a" * 64
NOW = 1_800_000_000.0
USER = {"id": "user-0123456789abcdef", "username": "ada", "admin": True,
        "credential_version": 3}


def b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def claims(**over):
    token, _ = tokens.issue(SECRET, USER, NOW)
    c = jwt.decode(token, options={"verify_signature": False})
    return {**c, **over}


def test_issue_and_decode_round_trip():
    token, exp = tokens.issue(SECRET, USER, NOW)
    assert exp == NOW + 3600
    c = tokens.decode(SECRET, token, NOW + 10)
    assert c["sub"] == c["uid"] == USER["id"]
    assert c["username"] == "ada" and c["adm"] is True and c["ver"] == 3
    assert c["iat"] == NOW and c["exp"] == NOW + 3600 and len(c["jti"]) >= 16
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_each_token_has_its_own_jti():
    a, _ = tokens.issue(SECRET, USER, NOW)
    b, _ = tokens.issue(SECRET, USER, NOW)
    assert tokens.decode(SECRET, a, NOW)["jti"] != tokens.decode(SECRET, b, NOW)["jti"]


def test_expired_token_is_refused():
    token, exp = tokens.issue(SECRET, USER, NOW)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.decode(SECRET, token, exp)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.decode(SECRET, token, exp + 1)


def test_wrong_secret_is_refused():
    token, _ = tokens.issue(b"b" * 64, USER, NOW)
    with pytest.raises(Unauthorized):
        tokens.decode(SECRET, token, NOW)


def test_alg_none_is_refused():
    for alg in ("none", "None", "NONE"):
        token = f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims())}."
        with pytest.raises(Unauthorized):
            tokens.decode(SECRET, token, NOW)


def test_other_hmac_algorithms_are_refused():
    for alg in ("HS384", "HS512"):
        token = jwt.encode(claims(), SECRET, algorithm=alg)
        with pytest.raises(Unauthorized):
            tokens.decode(SECRET, token, NOW)


def test_rs256_and_hs_with_public_key_confusion_are_refused():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs = jwt.encode(claims(), key, algorithm="RS256")
    with pytest.raises(Unauthorized):
        tokens.decode(SECRET, rs, NOW)
    # The classic confusion: a verifier that accepted RS256 with the public key as an HMAC
    # secret. Here the only accepted key is the server secret, and RS256 headers never pass.
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    forged = ".".join([b64({"alg": "RS256", "typ": "JWT"}), b64(claims()),
                       jwt.encode(claims(), SECRET, algorithm="HS256").split(".")[2]])
    with pytest.raises(Unauthorized):
        tokens.decode(SECRET, forged, NOW)
    with pytest.raises(Unauthorized):
        tokens.decode(public_pem, jwt.encode(claims(), SECRET, algorithm="HS256"), NOW)


@pytest.mark.parametrize("missing", tokens.REQUIRED_CLAIMS)
def test_missing_claims_are_refused(missing):
    c = claims()
    del c[missing]
    token = jwt.encode(c, SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized):
        tokens.decode(SECRET, token, NOW)


def test_inconsistent_or_mistyped_claims_are_refused():
    for bad in (claims(uid="user-ffffffffffffffff"), claims(ver="3"), claims(exp=str(NOW + 60))):
        with pytest.raises(Unauthorized):
            tokens.decode(SECRET, jwt.encode(bad, SECRET, algorithm="HS256"), NOW)


def test_tampered_payload_and_garbage_are_refused():
    token, _ = tokens.issue(SECRET, USER, NOW)
    header, _, sig = token.split(".")
    forged = f"{header}.{b64(claims(adm=True, username='root'))}x.{sig}"
    for bad in (forged, "", "a.b.c", "x" * 5000, token + "x"):
        with pytest.raises(Unauthorized):
            tokens.decode(SECRET, bad, NOW)
