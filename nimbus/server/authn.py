"""Who is calling: operators by HMAC signature or JWT, nodes by client certificate."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from nimbus.errors import Forbidden, Unauthorized
from nimbus.security import hmac_sign as hs
from nimbus.security import tokens
from nimbus.server import iam
from nimbus.server.replay import NonceCache
from nimbus.server.state import State
from nimbus.store import HOT_READ_MAX_AGE_SEC

SIGNATURE_HEADERS = ("HTTP_X_ACCESS_KEY", "HTTP_X_TIMESTAMP", "HTTP_X_NONCE", "HTTP_X_SIGNATURE")


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    admin: bool
    via: str
    access_key: str | None = None


class Authenticator:
    def __init__(self, state: State) -> None:
        self.state = state
        # A nonce is remembered until its timestamp is more than MAX_SKEW in the past, in
        # memory and in a journal that outlives this process (server/replay.py).
        self.nonces = NonceCache(hs.MAX_SKEW_SEC + 5, hs.MAX_SKEW_SEC,
                                 state.data_dir / "replay")
        self.nonces.load(state.now())
        self._certs: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._certs_lock = threading.Lock()
        self.verified_tokens = tokens.VerifiedTokens()
        # SECURITY: decrypted API secrets by (access key, sealed value), so the AES-GCM open
        # is not paid on every signed request. Only in this process's memory, like the
        # store key itself; a deleted key is gone from the store, so it never gets here.
        self._secrets: dict[tuple[str, str], str] = {}

    def operator(self, environ: dict[str, Any], body: bytes) -> Principal:
        authz = environ.get("HTTP_AUTHORIZATION", "")
        if authz and any(h in environ for h in SIGNATURE_HEADERS):
            # SECURITY: one credential per request; never pick one and ignore the other.
            raise Unauthorized("send either a bearer token or a signature, not both")
        if authz:
            scheme, _, token = authz.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("unsupported Authorization header; use Bearer <token>")
            user = iam.check_token(self.state, token.strip(), self.verified_tokens)
            return Principal(user["id"], user["username"], bool(user["admin"]), "jwt")
        if "HTTP_X_ACCESS_KEY" in environ:
            return self._hmac(environ, body)
        raise Unauthorized("authentication required: sign the request or send a bearer token")

    def _hmac(self, environ: dict[str, Any], body: bytes) -> Principal:
        access_key = environ.get("HTTP_X_ACCESS_KEY", "")
        timestamp = environ.get("HTTP_X_TIMESTAMP", "")
        nonce = environ.get("HTTP_X_NONCE", "")
        given = environ.get("HTTP_X_SIGNATURE", "")
        if not (access_key and timestamp and nonce and given):
            raise Unauthorized("incomplete signature headers")
        now = self.state.now()
        when = hs.parse_timestamp(timestamp)
        if when is None or abs(now - when) > hs.MAX_SKEW_SEC:
            raise Unauthorized("request timestamp is missing or outside the allowed skew")
        if when < self.nonces.not_before:
            # SECURITY: signed before a reboot; its nonce may be lost with the page cache.
            raise Unauthorized("request was signed before the server restarted; sign it again")
        if not hs.NONCE_RE.fullmatch(nonce):
            raise Unauthorized("nonce must be at least 16 random bytes in lowercase hex")
        key = (self.state.store.lookup("keys", access_key, HOT_READ_MAX_AGE_SEC)
               if len(access_key) <= 64 else None)
        if key is None:
            raise Unauthorized("invalid signature or unknown access key")
        secret = self._secret(access_key, key)
        path = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if not hs.verify(secret, method, path, timestamp, nonce, body, given):
            raise Unauthorized("invalid signature or unknown access key")
        # A read is served even when the replay journal cannot be written (server/replay.py).
        read = method in ("GET", "HEAD")
        if not self.nonces.first_use(access_key, nonce, now, when, durable=not read):
            raise Unauthorized("replayed request (nonce already used)")
        user = self.state.store.lookup("users", key["user_id"], HOT_READ_MAX_AGE_SEC)
        if user is None:
            raise Unauthorized("invalid signature or unknown access key")
        if user.get("bootstrap_pending"):  # its first signed request: the operator has it
            iam.confirm_bootstrap(self.state, user["id"])
        return Principal(user["id"], user["username"], bool(user["admin"]), "hmac", access_key)

    def _secret(self, access_key: str, key: dict[str, Any]) -> str:
        cached = self._secrets.get((access_key, key["secret"]))
        if cached is None:
            if len(self._secrets) >= 4096:
                self._secrets = {}
            cached = self.state.box.open(key["secret"], access_key)
            self._secrets[(access_key, key["secret"])] = cached
        return cached

    def node(self, environ: dict[str, Any]) -> str:
        """The node ID of a verified, unrevoked client certificate (mTLS)."""
        pem = environ.get("SSL_CLIENT_CERT")
        if not pem or environ.get("SSL_CLIENT_VERIFY") != "SUCCESS":
            raise Unauthorized("a node client certificate is required")
        serial, node_id = self._cert(pem)
        if serial in self.state.store.read("revoked", HOT_READ_MAX_AGE_SEC):
            raise Unauthorized("certificate has been revoked")
        node = self.state.store.lookup(  # just joined or renewed: found in the file
            "nodes", node_id, HOT_READ_MAX_AGE_SEC,
            lambda n: n["state"] != "pending" and serial in n.get("cert_serials", []))
        if node is None or node["state"] == "pending":
            raise Unauthorized("certificate does not belong to a joined node")
        if serial not in node.get("cert_serials", []):
            raise Unauthorized("certificate is not one issued to this node")
        return node_id

    def _cert(self, pem: str) -> tuple[str, str]:
        with self._certs_lock:
            hit = self._certs.get(pem)
            if hit is not None:
                self._certs.move_to_end(pem)
                return hit
        from nimbus.security.pki import cert_info

        info = cert_info(pem)
        value = (info.serial, info.common_name)
        with self._certs_lock:
            self._certs[pem] = value
            if len(self._certs) > 20000:
                self._certs.popitem(last=False)
        return value


def require_admin(principal: Principal) -> None:
    if not principal.admin:
        raise Forbidden("this action needs an admin user")


def require_self_or_admin(principal: Principal, user_id: str) -> None:
    if not principal.admin and principal.user_id != user_id:
        raise Forbidden("you may only manage your own credentials")
