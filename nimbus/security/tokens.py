"""JWT bearer tokens: HS256 only, 1 hour, bound to the user's credential version."""

from __future__ import annotations

import secrets
from typing import Any

from nimbus.errors import Unauthorized

ALGORITHM = "HS256"
LIFETIME_SEC = 3600
REQUIRED_CLAIMS = ["sub", "uid", "username", "adm", "iat", "exp", "jti", "ver"]


def issue(secret: bytes, user: dict[str, Any], now: float) -> tuple[str, int]:
    import jwt

    exp = int(now) + LIFETIME_SEC
    claims = {
        "sub": user["id"], "uid": user["id"], "username": user["username"],
        "adm": bool(user.get("admin")), "iat": int(now), "exp": exp,
        "jti": secrets.token_hex(12), "ver": int(user.get("credential_version", 0)),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), exp


def decode(secret: bytes, token: str, now: float) -> dict[str, Any]:
    """Verify signature (HS256 pinned), expiry and required claims; Unauthorized otherwise."""
    import jwt

    if len(token) > 4096:
        raise Unauthorized("invalid token")
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise Unauthorized("invalid token")
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM],
            options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        raise Unauthorized("invalid token") from None
    if not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
        raise Unauthorized("token expired")
    if claims.get("sub") != claims.get("uid") or not isinstance(claims.get("ver"), int):
        raise Unauthorized("invalid token")
    return claims
