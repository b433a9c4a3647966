"""Wire types shared by server, agent and CLI: input validation, IDs, the join token."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nimbus.errors import BadRequest

MAX_BODY = 1024 * 1024
JOIN_TOKEN_PREFIX = "nimbus-join-v1."  # noqa: S105 - a format prefix, not a secret

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ID_RE = {
    "user": re.compile(r"^user-[0-9a-f]{16}$"),
    "node": re.compile(r"^node-[0-9a-f]{16}$"),
    "task": re.compile(r"^task-[0-9a-f]{16}$"),
    "key": re.compile(r"^NBUS[0-9A-Z]{16}$"),
}
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def new_id(kind: str) -> str:
    """A random prefixed ID: `user-…`, `node-…`, `task-…`, or an access key `NBUS…`."""
    if kind == "key":
        return "NBUS" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
    return f"{kind}-{secrets.token_hex(8)}"


def check_id(kind: str, value: object) -> str:
    """Return value if it is a well-formed ID of that kind, else raise BadRequest."""
    if not isinstance(value, str) or not ID_RE[kind].fullmatch(value):
        raise BadRequest(f"invalid {kind} id")
    return value


@dataclass(frozen=True)
class Field:
    """One JSON field: its type check and whether it must be present."""

    check: Callable[[str, Any], Any]
    required: bool = False


def string(max_len: int = 256, pattern: re.Pattern[str] | None = None,
           min_len: int = 1) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be a string")
        if not min_len <= len(value) <= max_len:
            raise BadRequest(f"{name} must be {min_len} to {max_len} characters")
        if any(ord(c) < 32 or ord(c) == 127 for c in value) and pattern is None:
            raise BadRequest(f"{name} must not contain control characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise BadRequest(f"{name} has an invalid format")
        return value
    return check


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value


def number(lo: float, hi: float, integer: bool = False) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise BadRequest(f"{name} must be a number")
        if not lo <= value <= hi:
            raise BadRequest(f"{name} must be between {lo:g} and {hi:g}")
        return value
    return check


def ip_address(name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise BadRequest(f"{name} must be an IP address")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise BadRequest(f"{name} must be an IP address") from None


def obj(schema: dict[str, Field]) -> Callable[[str, Any], dict[str, Any]]:
    def check(name: str, value: Any) -> dict[str, Any]:
        return validate(value, schema, where=name)
    return check


def validate(data: Any, schema: dict[str, Field], where: str = "body") -> dict[str, Any]:
    """Check a decoded JSON object against a schema; unknown fields are rejected."""
    if not isinstance(data, dict):
        raise BadRequest(f"{where} must be a JSON object")
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise BadRequest(f"unknown field: {unknown[0][:64]}")
    out: dict[str, Any] = {}
    for key, field in schema.items():
        if key in data:
            out[key] = field.check(key, data[key])
        elif field.required:
            raise BadRequest(f"missing field: {key}")
    return out


def decode_json(raw: bytes) -> Any:
    if len(raw) > MAX_BODY:
        from nimbus.errors import PayloadTooLarge
        raise PayloadTooLarge("request body is larger than 1 MiB")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


JOIN_TOKEN_FIELDS = (
    "node_id", "secret", "expires_at", "wg_ip", "wg_private_key", "wg_public_key",
    "wg_endpoint", "api_url", "subnet", "ca_pem",
)


def encode_join_token(fields: dict[str, Any]) -> str:
    """`nimbus-join-v1.` + base64url(JSON) — DESIGN §3.4."""
    body = json.dumps({k: fields[k] for k in JOIN_TOKEN_FIELDS}, separators=(",", ":"))
    return JOIN_TOKEN_PREFIX + b64url_encode(body.encode())


def decode_join_token(token: str) -> dict[str, Any]:
    token = token.strip()
    if not token.startswith(JOIN_TOKEN_PREFIX) or len(token) > 16384:
        raise BadRequest("not a Nimbus join token (expected nimbus-join-v1.…)")
    try:
        data = json.loads(b64url_decode(token[len(JOIN_TOKEN_PREFIX):]))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("join token is corrupted") from None
    if not isinstance(data, dict) or any(k not in data for k in JOIN_TOKEN_FIELDS):
        raise BadRequest("join token is incomplete")
    check_id("node", data["node_id"])
    return data
