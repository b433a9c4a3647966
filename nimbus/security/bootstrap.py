"""The remote bootstrap proof, computed alike by `nimbus bootstrap` and the control plane."""

from __future__ import annotations

import hashlib
import hmac


def bootstrap_proof(secret: str, ca_fingerprint: str, nonce: str) -> str:
    """HMAC binding the one-time secret to the CA the caller saw (defeats a TLS MITM)."""
    msg = f"nimbus-bootstrap-v1\n{ca_fingerprint}\n{nonce}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()
