"""WireGuard X25519 keys, base64-encoded exactly as `wg genkey` / `wg pubkey` print them."""

from __future__ import annotations

import base64
import binascii
import os


def is_valid_key(s: object) -> bool:
    """True when s is canonical base64 of exactly 32 bytes (a WireGuard key)."""
    if not isinstance(s, str) or len(s) != 44:
        return False
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32 and base64.b64encode(raw).decode("ascii") == s


def _clamp(raw: bytes) -> bytes:
    """Curve25519 clamping, as `wg genkey` applies it before printing."""
    b = bytearray(raw)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


def public_key(private_b64: str) -> str:
    """The public key for a base64 private key; ValueError if it is not a key.

    SECURITY: the private key never appears in the error message.
    """
    # Imported here: cryptography is slow to import and most commands never need it.
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if not is_valid_key(private_b64):
        raise ValueError("private key is not base64 of 32 bytes")
    priv = X25519PrivateKey.from_private_bytes(base64.b64decode(private_b64))
    pub = priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(pub).decode("ascii")


def generate_keypair() -> tuple[str, str]:
    """A fresh (private, public) pair, both base64."""
    private_b64 = base64.b64encode(_clamp(os.urandom(32))).decode("ascii")
    return private_b64, public_key(private_b64)
