"""Operator node endpoints (thin handlers)."""

from __future__ import annotations

from typing import Any

import bottle

from nimbus import wire
from nimbus.server import nodes
from nimbus.server.api.routing import (
    CURRENT_PASSWORD,
    Ctx,
    Router,
    reauthenticate,
    respond_encoded,
)

# Join material is lasting access (a joined node renews its own certificate), so a bearer
# token needs the current password for it, as for an API key (routing.reauthenticate).
CREATE_SCHEMA = {
    "ip_address": wire.Field(wire.endpoint_ip, required=True),
    "name": wire.Field(wire.string(63, wire.NAME_RE)),
    "current_password": CURRENT_PASSWORD,
}
TOKEN_SCHEMA = {"current_password": CURRENT_PASSWORD}
IP_SCHEMA = {"ip_address": wire.Field(wire.endpoint_ip, required=True)}


def register(r: Router) -> None:
    @r.add("POST", "/v1/nodes", auth="admin", schema=CREATE_SCHEMA, status=201)
    def create(ctx: Ctx) -> dict[str, Any]:
        reauthenticate(ctx)
        return nodes.create(ctx.state, ctx.body["ip_address"], ctx.body.get("name"), ctx.actor)

    @r.add("GET", "/v1/nodes", auth="user")
    def list_nodes(ctx: Ctx) -> bottle.HTTPResponse:
        return respond_encoded(200, nodes.listing_json(ctx.state))

    @r.add("GET", "/v1/nodes/<node_id>", auth="user")
    def describe(ctx: Ctx, node_id: str) -> dict[str, Any]:
        return nodes.describe(ctx.state, nodes.resolve(ctx.state, node_id))

    @r.add("POST", "/v1/nodes/<node_id>/drain", auth="admin", schema={})
    def drain(ctx: Ctx, node_id: str) -> dict[str, Any]:
        return nodes.drain(ctx.state, nodes.resolve(ctx.state, node_id), ctx.actor)

    @r.add("POST", "/v1/nodes/<node_id>/undrain", auth="admin", schema={})
    def undrain(ctx: Ctx, node_id: str) -> dict[str, Any]:
        return nodes.undrain(ctx.state, nodes.resolve(ctx.state, node_id), ctx.actor)

    @r.add("POST", "/v1/nodes/<node_id>/token", auth="admin", schema=TOKEN_SCHEMA)
    def new_token(ctx: Ctx, node_id: str) -> dict[str, Any]:
        reauthenticate(ctx)
        return nodes.new_join_token(ctx.state, nodes.resolve(ctx.state, node_id), ctx.actor)

    @r.add("POST", "/v1/nodes/<node_id>/ip", auth="admin", schema=IP_SCHEMA)
    def set_ip(ctx: Ctx, node_id: str) -> dict[str, Any]:
        return nodes.set_ip(ctx.state, nodes.resolve(ctx.state, node_id), ctx.body["ip_address"],
                            ctx.actor)

    @r.add("DELETE", "/v1/nodes/<node_id>", auth="admin")
    def delete(ctx: Ctx, node_id: str) -> dict[str, Any]:
        force = ctx.query.get("force", "").lower() in ("1", "true", "yes")
        return nodes.delete(ctx.state, nodes.resolve(ctx.state, node_id), ctx.actor, force)
