"""HMAC-SHA256 request signing (design.md §3.2): one implementation for CLI and server."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time

# The CLI signs every request: this module imports nothing it does not need to sign
# (datetime and secrets cost the CLI's start-up ~3 ms together; parsing is server-side).

HEADER_KEY = "X-Access-Key"
HEADER_TIMESTAMP = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_SIGNATURE = "X-Signature"
MAX_SKEW_SEC = 300
NONCE_RE = re.compile(r"^[0-9a-f]{32,128}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def format_timestamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(when)))


def parse_timestamp(text: str) -> float | None:
    """Seconds since the epoch for an RFC 3339 UTC stamp like 2026-11-26T21:37:17Z."""
    if not TIMESTAMP_RE.fullmatch(text):
        return None
    from datetime import datetime, timezone

    try:
        # datetime() validates the fields; strptime did the same at 10x the cost per request.
        when = datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                        int(text[14:16]), int(text[17:19]), tzinfo=timezone.utc)
    except ValueError:
        return None
    return when.timestamp()


def string_to_sign(method: str, path_and_query: str, timestamp: str, nonce: str,
                   body: bytes) -> bytes:
    body_hash = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path_and_query, timestamp, nonce, body_hash)).encode()


def signature(secret_key: str, method: str, path_and_query: str, timestamp: str, nonce: str,
              body: bytes) -> str:
    msg = string_to_sign(method, path_and_query, timestamp, nonce, body)
    return hmac.new(secret_key.encode(), msg, hashlib.sha256).hexdigest()


def sign_headers(access_key: str, secret_key: str, method: str, path_and_query: str,
                 body: bytes, now: float) -> dict[str, str]:
    """The four headers that authenticate one request."""
    timestamp = format_timestamp(now)
    nonce = os.urandom(16).hex()  # what secrets.token_hex(16) does
    return {
        HEADER_KEY: access_key,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature(secret_key, method, path_and_query, timestamp, nonce, body),
    }


def verify(secret_key: str, method: str, path_and_query: str, timestamp: str, nonce: str,
           body: bytes, given: str) -> bool:
    """Constant-time comparison of the expected and the given signature."""
    expected = signature(secret_key, method, path_and_query, timestamp, nonce, body)
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))
