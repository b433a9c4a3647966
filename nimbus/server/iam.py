"""Users, API keys, passwords, JWTs and bootstrap: IAM domain logic."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

from nimbus import wire
from nimbus.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from nimbus.logs import mask
from nimbus.security import passwords, tokens
from nimbus.security.bootstrap import bootstrap_proof
from nimbus.server import audited
from nimbus.server.ratelimit import username_key
from nimbus.server.state import State
from nimbus.store import HOT_READ_MAX_AGE_SEC

log = logging.getLogger("nimbus.iam")
BOOTSTRAP_FILE = "bootstrap.secret"
# SECURITY: each key is a sealed secret in keys.json, rewritten on every change; without a
# cap one user (admin or not) could grow that file, and the per-request key lookup, without
# bound. Ten covers rotation with a few machines/scripts per user (docs/security.md).
MAX_KEYS_PER_USER = 10


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "username": user["username"], "admin": bool(user["admin"]),
            "created_at": user["created_at"], "has_password": bool(user.get("password_hash"))}


def public_key(key: dict[str, Any]) -> dict[str, Any]:
    return {"access_key": key["access_key"], "user_id": key["user_id"],
            "created_at": key["created_at"]}


def _find_username(users: dict[str, Any], username: str) -> dict[str, Any] | None:
    wanted = username_key(username)
    return next((u for u in users.values() if username_key(u["username"]) == wanted), None)


def get_user(state: State, user_id: str) -> dict[str, Any]:
    user = state.store.read("users").get(user_id)
    if user is None:
        raise NotFound("no such user")
    return user


def list_users(state: State) -> list[dict[str, Any]]:
    users = state.store.read("users").values()
    return [public_user(u) for u in sorted(users, key=lambda u: u["created_at"])]


def create_user(state: State, username: str, admin: bool, actor: str) -> dict[str, Any]:
    with audited.transaction(state, "users") as (tx, note):
        if _find_username(tx["users"], username):
            raise Conflict(f"a user named {username} already exists")
        user = {"id": wire.new_id("user"), "username": username, "admin": admin,
                "created_at": round(state.now(), 3), "password_hash": None,
                "credential_version": 0}
        tx["users"][user["id"]] = user
        note("user.created", user_id=user["id"], admin=admin, actor=actor)
    return public_user(user)


def delete_user(state: State, user_id: str, actor: str) -> None:
    with audited.transaction(state, "users", "keys") as (tx, note):
        user = tx["users"].get(user_id)
        if user is None:
            raise NotFound("no such user")
        admins = [u for u in tx["users"].values() if u["admin"]]
        if user["admin"] and len(admins) == 1:
            raise Conflict("refusing to delete the last admin user")
        del tx["users"][user_id]
        for key_id in [k for k, v in tx["keys"].items() if v["user_id"] == user_id]:
            del tx["keys"][key_id]
        note("user.deleted", user_id=user_id, actor=actor)


def create_key(state: State, user_id: str, actor: str) -> dict[str, Any]:
    secret = secrets.token_urlsafe(32)
    with audited.transaction(state, "users", "keys") as (tx, note):
        if user_id not in tx["users"]:
            raise NotFound("no such user")
        if sum(1 for k in tx["keys"].values() if k["user_id"] == user_id) >= MAX_KEYS_PER_USER:
            raise Conflict(f"this user already has {MAX_KEYS_PER_USER} API keys, the most one "
                           "user may hold; delete one first (nimbus iam delete-key)")
        access_key = wire.new_id("key")
        key = {"access_key": access_key, "user_id": user_id,
               "created_at": round(state.now(), 3),
               "secret": state.box.seal(secret, access_key)}
        tx["keys"][access_key] = key
        note("key.created", user_id=user_id, access_key=access_key, actor=actor)
    return {**public_key(key), "secret_key": secret}


def delete_key(state: State, user_id: str, access_key: str, actor: str) -> None:
    with audited.transaction(state, "keys") as (tx, note):
        key = tx["keys"].get(access_key)
        if key is None or key["user_id"] != user_id:
            raise NotFound("no such key for this user")
        del tx["keys"][access_key]
        note("key.deleted", user_id=user_id, access_key=access_key, actor=actor)


def list_keys(state: State, user_id: str) -> list[dict[str, Any]]:
    get_user(state, user_id)
    keys = state.store.read("keys").values()
    return [public_key(k) for k in keys if k["user_id"] == user_id]


def set_password(state: State, user_id: str, password: str, actor: str) -> None:
    if not passwords.MIN_LENGTH <= len(password) <= passwords.MAX_LENGTH:
        raise BadRequest(f"password must be at least {passwords.MIN_LENGTH} characters")
    hashed = passwords.hash_password(password)
    with audited.transaction(state, "users") as (tx, note):
        user = tx["users"].get(user_id)
        if user is None:
            raise NotFound("no such user")
        user["password_hash"] = hashed
        # SECURITY: bumping the version invalidates every JWT issued before this change.
        user["credential_version"] = int(user.get("credential_version", 0)) + 1
        note("password.changed", user_id=user_id, actor=actor)


def confirm_password(state: State, user_id: str, password: str | None, source: str) -> None:
    """The caller behind a bearer token proves it knows its password (throttled like login)."""
    user = get_user(state, user_id)
    if not user.get("password_hash"):
        raise Forbidden("this user has no password, so a bearer token cannot be confirmed; "
                        "sign the request with an API key (HMAC) instead of --token")
    if not password:
        raise BadRequest("current_password is required when using a bearer token")
    attempt = state.throttle.attempt(user["username"], source)
    if not passwords.verify_password(password, user["password_hash"]):
        state.audit.record("reauth.failed", state.now(), user_id=user_id, source=source)
        raise Forbidden("current password is wrong")
    state.throttle.succeeded(attempt)


def issue_token(state: State, user: dict[str, Any], via: str,
                access_key: str | None = None) -> dict[str, Any]:
    """A JWT for `user`; one asked for with an API key is bound to that key (tokens.issue)."""
    token, exp = tokens.issue(state.keys.jwt_secret, user, state.now(), access_key)
    extra = {"access_key": access_key} if access_key else {}
    state.audit.record("token.issued", state.now(), user_id=user["id"], via=via, **extra)
    return {"token": token, "expires_at": exp}


def login(state: State, username: str, password: str, source: str) -> dict[str, Any]:
    now = state.now()
    attempt = state.throttle.attempt(username, source)  # counted now: parallel tries wait
    user = _find_username(state.store.read("users"), username)
    # SECURITY: verify_password spends one scrypt even when the user does not exist.
    ok = passwords.verify_password(password, user.get("password_hash") if user else None)
    if not ok or user is None:
        # SECURITY: an unknown "username" may be a password typed into the wrong field,
        # so only known users are named; others are logged as a short hash.
        who = ({"user_id": user["id"]} if user else
               {"unknown_user_sha256": hashlib.sha256(username.encode()).hexdigest()[:12]})
        state.audit.record("login.failed", now, source=source, **who)
        raise Unauthorized("invalid username or password")
    state.throttle.succeeded(attempt)
    state.audit.record("login.ok", now, user_id=user["id"], source=source)
    return issue_token(state, user, via="login")


def check_token(state: State, token: str,
                verified: tokens.VerifiedTokens | None = None) -> dict[str, Any]:
    """The user a bearer token stands for, if the token and the user are still valid."""
    claims = tokens.decode(state.keys.jwt_secret, token, state.now(), verified)
    def current(u: dict[str, Any]) -> bool:
        return int(u.get("credential_version", 0)) == claims["ver"]

    user = state.store.lookup("users", claims["sub"], HOT_READ_MAX_AGE_SEC, current)
    if user is None or not current(user):
        raise Unauthorized("token is no longer valid")
    access_key = claims.get("akid")
    if access_key is not None:
        # SECURITY: a token minted with an API key dies with that key; otherwise deleting a
        # stolen key would leave its holder an hour of access (and a self-renewing node).
        def users_key(k: dict[str, Any]) -> bool:
            return k["user_id"] == user["id"]

        key = state.store.lookup("keys", access_key, HOT_READ_MAX_AGE_SEC, users_key)
        if key is None or not users_key(key):
            raise Unauthorized("token is no longer valid")
    return user


# -- bootstrap ----------------------------------------------------------------------------

def is_bootstrapped(state: State) -> bool:
    """An admin exists whose credential reached the operator (not a pending bootstrap)."""
    return any(u["admin"] and not u.get("bootstrap_pending")
               for u in state.store.read("users").values())


def ensure_bootstrap_secret(state: State) -> None:
    """Before the first admin exists, keep a one-time secret readable only by root."""
    from nimbus.store.files import write_private

    path = state.data_dir / BOOTSTRAP_FILE
    if is_bootstrapped(state):
        path.unlink(missing_ok=True)
    elif not path.exists():
        write_private(path, secrets.token_hex(32) + "\n")
        log.info("not bootstrapped yet: run `nimbus bootstrap --data-dir %s` on this host, or "
                 "use the one-time secret in %s for a remote bootstrap", state.data_dir, path)


def bootstrap(state: State, via: str, nonce: str | None = None) -> dict[str, Any]:
    """Create the admin user and its first key, pending until confirm_bootstrap.

    Refused once a confirmed admin exists. Until then a re-run (after a crash, or a reply lost
    on the way) redoes it: the pending admin and its key are replaced in the same commit, so
    whatever point a crash hit, running bootstrap again yields working credentials.
    """
    secret = secrets.token_urlsafe(32)
    with audited.transaction(state, "users", "keys") as (tx, note):
        admins = [u for u in tx["users"].values() if u["admin"]]
        if any(not u.get("bootstrap_pending") for u in admins):
            raise Conflict("this control plane is already bootstrapped")
        # SECURITY: a redo needs a fresh proof; the same request replayed is refused.
        used = [n for u in admins for n in u.get("bootstrap_nonces", [])]
        if nonce is not None and nonce in used:
            raise Conflict("this bootstrap request was already answered; run bootstrap again")
        for old in admins:
            del tx["users"][old["id"]]
            for key_id in [k for k, v in tx["keys"].items() if v["user_id"] == old["id"]]:
                del tx["keys"][key_id]
        now = round(state.now(), 3)
        user = {"id": wire.new_id("user"), "username": "admin", "admin": True,
                "created_at": now, "password_hash": None, "credential_version": 0,
                "bootstrap_pending": True,
                "bootstrap_nonces": ([*used, nonce] if nonce else used)[-16:]}
        access_key = wire.new_id("key")
        tx["users"][user["id"]] = user
        tx["keys"][access_key] = {"access_key": access_key, "user_id": user["id"],
                                  "created_at": now,
                                  "secret": state.box.seal(secret, access_key)}
        note("bootstrap", user_id=user["id"], via=via, access_key=access_key,
             replaces=[u["id"] for u in admins])
    log.info("bootstrapped: admin %s with key %s (pending until the operator has it)",
             user["id"], mask(access_key, 8))
    return {"user": public_user(user), "access_key": access_key, "secret_key": secret}


def confirm_bootstrap(state: State, user_id: str) -> None:
    """The operator has the admin's credential: from now on bootstrap is refused."""
    with audited.transaction(state, "users") as (tx, note):
        user = tx["users"].get(user_id)
        if user is None or not user.get("bootstrap_pending"):
            return
        del user["bootstrap_pending"]
        user.pop("bootstrap_nonces", None)
        note("bootstrap.confirmed", user_id=user_id)
    (state.data_dir / BOOTSTRAP_FILE).unlink(missing_ok=True)


def remote_bootstrap(state: State, ca_fingerprint: str, nonce: str, proof: str,
                     source: str) -> dict[str, Any]:
    path = state.data_dir / BOOTSTRAP_FILE
    now = state.now()
    attempt = state.throttle.attempt("#bootstrap", source)  # per source, like logins
    secret = path.read_text().strip() if path.exists() else ""
    expected = bootstrap_proof(secret or secrets.token_hex(32), state.keys.ca_fingerprint, nonce)
    if not secret or not hmac.compare_digest(expected, proof):
        state.audit.record("bootstrap.refused", now, source=source)
        if is_bootstrapped(state):
            raise Conflict("this control plane is already bootstrapped")
        raise Forbidden("bootstrap secret or CA fingerprint does not match")
    if not hmac.compare_digest(ca_fingerprint, state.keys.ca_fingerprint):
        raise Forbidden("bootstrap secret or CA fingerprint does not match")
    state.throttle.succeeded(attempt)
    return bootstrap(state, via=f"remote:{source}", nonce=nonce)
