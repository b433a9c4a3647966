"""Secrets at rest: AES-256-GCM with a key kept in its own 0600 file, apart from the store."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from nimbus.errors import ConfigError

PREFIX = "enc1:"


class SecretBox:
    """Seals short secrets (API secret keys) so a copied store file alone reveals nothing."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != 32:
            raise ConfigError("the store encryption key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        """Load the key (KeyMaterial creates it on a control plane's first start)."""
        try:
            key = base64.b64decode(path.read_bytes().strip(), validate=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"reading the store key {path}: {exc}") from None
        return cls(key)

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, token: str, context: str) -> str:
        from cryptography.exceptions import InvalidTag

        if not token.startswith(PREFIX):
            raise ConfigError("a stored secret is not encrypted")
        raw = base64.b64decode(token[len(PREFIX):])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag:
            raise ConfigError("a stored secret does not match the store key") from None
