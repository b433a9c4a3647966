"""IAM endpoints: users, keys, passwords, login, tokens, bootstrap (thin handlers)."""

from __future__ import annotations

import re
from typing import Any

from nimbus import wire
from nimbus.server import iam
from nimbus.server.api.routing import CURRENT_PASSWORD, Ctx, Router, reauthenticate
from nimbus.server.authn import require_self_or_admin

HEX64 = re.compile(r"^[0-9a-f]{64}$")
NONCE = re.compile(r"^[0-9a-f]{32,128}$")

USER_SCHEMA = {
    "username": wire.Field(wire.string(63, wire.NAME_RE), required=True),
    "admin": wire.Field(wire.boolean),
}
LOGIN_SCHEMA = {
    "username": wire.Field(wire.string(256), required=True),
    "password": wire.Field(wire.string(1024), required=True),
}
PASSWORD_SCHEMA = {"password": wire.Field(wire.string(1024), required=True),
                   "current_password": CURRENT_PASSWORD}
KEY_SCHEMA = {"current_password": CURRENT_PASSWORD}
BOOTSTRAP_SCHEMA = {
    "ca_fingerprint": wire.Field(wire.string(64, HEX64), required=True),
    "nonce": wire.Field(wire.string(128, NONCE), required=True),
    "proof": wire.Field(wire.string(64, HEX64), required=True),
}


def register(r: Router) -> None:
    @r.add("POST", "/v1/bootstrap", auth="none", schema=BOOTSTRAP_SCHEMA, status=201)
    def bootstrap(ctx: Ctx) -> dict[str, Any]:
        b = ctx.body
        return iam.remote_bootstrap(ctx.state, b["ca_fingerprint"], b["nonce"], b["proof"],
                                    ctx.source)

    @r.add("POST", "/v1/iam/login", auth="none", schema=LOGIN_SCHEMA)
    def login(ctx: Ctx) -> dict[str, Any]:
        return iam.login(ctx.state, ctx.body["username"], ctx.body["password"], ctx.source)

    @r.add("POST", "/v1/iam/token", auth="user", schema={})
    def token(ctx: Ctx) -> dict[str, Any]:
        assert ctx.principal is not None
        if ctx.principal.via != "hmac":
            from nimbus.errors import Forbidden
            raise Forbidden("tokens are issued only to HMAC-signed requests")
        return iam.issue_token(ctx.state, iam.get_user(ctx.state, ctx.principal.user_id), "hmac",
                               access_key=ctx.principal.access_key)

    @r.add("GET", "/v1/iam/users", auth="admin")
    def list_users(ctx: Ctx) -> list[dict[str, Any]]:
        return iam.list_users(ctx.state)

    @r.add("POST", "/v1/iam/users", auth="admin", schema=USER_SCHEMA, status=201)
    def create_user(ctx: Ctx) -> dict[str, Any]:
        return iam.create_user(ctx.state, ctx.body["username"], ctx.body.get("admin", False),
                               actor=ctx.actor)

    @r.add("GET", "/v1/iam/users/<user_id>", auth="user")
    def get_user(ctx: Ctx, user_id: str) -> dict[str, Any]:
        _self_or_admin(ctx, user_id)
        return iam.public_user(iam.get_user(ctx.state, user_id))

    @r.add("DELETE", "/v1/iam/users/<user_id>", auth="admin")
    def delete_user(ctx: Ctx, user_id: str) -> dict[str, Any]:
        iam.delete_user(ctx.state, wire.check_id("user", user_id), actor=ctx.actor)
        return {"id": user_id, "deleted": True}

    @r.add("GET", "/v1/iam/users/<user_id>/keys", auth="user")
    def list_keys(ctx: Ctx, user_id: str) -> list[dict[str, Any]]:
        _self_or_admin(ctx, user_id)
        return iam.list_keys(ctx.state, user_id)

    @r.add("POST", "/v1/iam/users/<user_id>/keys", auth="user", schema=KEY_SCHEMA, status=201)
    def create_key(ctx: Ctx, user_id: str) -> dict[str, Any]:
        _self_or_admin(ctx, user_id)
        reauthenticate(ctx)
        return iam.create_key(ctx.state, user_id, actor=ctx.actor)

    @r.add("DELETE", "/v1/iam/users/<user_id>/keys/<access_key>", auth="user")
    def delete_key(ctx: Ctx, user_id: str, access_key: str) -> dict[str, Any]:
        _self_or_admin(ctx, user_id)
        iam.delete_key(ctx.state, user_id, wire.check_id("key", access_key), actor=ctx.actor)
        return {"access_key": access_key, "deleted": True}

    @r.add("POST", "/v1/iam/users/<user_id>/password", auth="user", schema=PASSWORD_SCHEMA)
    def set_password(ctx: Ctx, user_id: str) -> dict[str, Any]:
        _self_or_admin(ctx, user_id)
        reauthenticate(ctx)
        iam.set_password(ctx.state, user_id, ctx.body["password"], actor=ctx.actor)
        return {"id": user_id, "password_changed": True}


def _self_or_admin(ctx: Ctx, user_id: str) -> None:
    wire.check_id("user", user_id)
    assert ctx.principal is not None
    require_self_or_admin(ctx.principal, user_id)
