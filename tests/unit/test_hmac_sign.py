"""HMAC request signing: the exact string to sign, and that any changed field fails."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from nimbus.security import hmac_sign as hs

SECRET = "s3cret-key"
ARGS = dict(method="POST", path_and_query="/v1/iam/users?x=1&y=2",
            timestamp="2026-11-26T21:37:17Z", nonce="0123456789abcdef0123456789abcdef",
            body=b'{"username":"ada"}')


def test_string_to_sign_is_exactly_five_lines_without_trailing_newline():
    got = hs.string_to_sign(**ARGS)
    body_hash = hashlib.sha256(ARGS["body"]).hexdigest()
    assert got == (b"POST\n/v1/iam/users?x=1&y=2\n2026-11-26T21:37:17Z\n"
                   b"0123456789abcdef0123456789abcdef\n" + body_hash.encode())
    assert not got.endswith(b"\n")


def test_empty_body_hash_is_sha256_of_nothing():
    got = hs.string_to_sign("get", "/healthz", "t", "n", b"")
    assert got.split(b"\n") == [b"GET", b"/healthz", b"t", b"n",
                                b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]


def test_signature_is_lowercase_hex_hmac_sha256():
    expected = hmac.new(SECRET.encode(), hs.string_to_sign(**ARGS), hashlib.sha256).hexdigest()
    sig = hs.signature(SECRET, **ARGS)
    assert sig == expected and sig == sig.lower() and len(sig) == 64


def test_verify_accepts_the_right_signature():
    assert hs.verify(SECRET, **ARGS, given=hs.signature(SECRET, **ARGS))


@pytest.mark.parametrize("field,value", [
    ("method", "PUT"),
    ("path_and_query", "/v1/iam/users?x=1&y=3"),
    ("path_and_query", "/v1/iam/users?y=2&x=1"),
    ("path_and_query", "/v1/iam/users"),
    ("path_and_query", "/v1/iam/Users?x=1&y=2"),
    ("timestamp", "2026-11-26T21:37:18Z"),
    ("nonce", "1123456789abcdef0123456789abcdef"),
    ("body", b'{"username":"adb"}'),
    ("body", b'{"username":"ada"} '),
    ("body", b""),
])
def test_verify_rejects_any_changed_field(field, value):
    sig = hs.signature(SECRET, **ARGS)
    assert not hs.verify(SECRET, **{**ARGS, field: value}, given=sig)


def test_verify_rejects_wrong_secret_and_garbage():
    sig = hs.signature(SECRET, **ARGS)
    assert not hs.verify("other", **ARGS, given=sig)
    assert not hs.verify(SECRET, **ARGS, given=sig.upper())
    assert not hs.verify(SECRET, **ARGS, given="")
    assert not hs.verify(SECRET, **ARGS, given="é" * 64)


def test_sign_headers_carry_a_fresh_nonce_and_a_valid_signature():
    h1 = hs.sign_headers("NBUSAAAA", SECRET, "GET", "/v1/nodes", b"", 1_800_000_000)
    h2 = hs.sign_headers("NBUSAAAA", SECRET, "GET", "/v1/nodes", b"", 1_800_000_000)
    assert h1[hs.HEADER_KEY] == "NBUSAAAA"
    assert h1[hs.HEADER_TIMESTAMP] == "2027-01-15T08:00:00Z"
    assert hs.NONCE_RE.match(h1[hs.HEADER_NONCE]) and len(h1[hs.HEADER_NONCE]) >= 32
    assert h1[hs.HEADER_NONCE] != h2[hs.HEADER_NONCE]
    assert hs.verify(SECRET, "GET", "/v1/nodes", h1[hs.HEADER_TIMESTAMP],
                     h1[hs.HEADER_NONCE], b"", h1[hs.HEADER_SIGNATURE])


def test_timestamps_round_trip_and_bad_ones_are_refused():
    assert hs.parse_timestamp(hs.format_timestamp(1_800_000_000.7)) == 1_800_000_000
    for bad in ("2026-11-26 21:37:17Z", "2026-11-26T21:37:17+00:00", "2026-13-26T21:37:17Z",
                "2026-11-26T21:37:17", "", "1800000000"):
        assert hs.parse_timestamp(bad) is None, bad
