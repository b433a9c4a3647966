"""Password hashing with scrypt (per-user salt) and constant-time verification."""

from __future__ import annotations

import base64
import hmac
import os

N, R, P = 2**14, 8, 1
MIN_LENGTH = 8
MAX_LENGTH = 1024


def _scrypt(password: str, salt: bytes, n: int = N, r: int = R, p: int = P) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password.encode())


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = _scrypt(password, salt)
    b64 = base64.b64encode
    return f"scrypt${N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


# SECURITY: a real hash of a random password, so unknown users cost a full scrypt too.
_DUMMY = hash_password(os.urandom(12).hex())


def verify_password(password: str, encoded: str | None) -> bool:
    """True when password matches; always spends one scrypt, even for unknown users."""
    target = encoded or _DUMMY
    try:
        _, n, r, p, salt, digest = target.split("$")
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
        ok = hmac.compare_digest(actual, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False
    return ok and encoded is not None
