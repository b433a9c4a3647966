"""Swarm groups and compose services (thin handlers)."""

from __future__ import annotations

from typing import Any

from nimbus import wire
from nimbus.server.api.routing import Ctx, Router
from nimbus.server.swarm import groups as swarm
from nimbus.server.swarm import lifecycle, services

REF = wire.string(64)  # an id or a name; looked up, never used as a path or argv
CREATE_SCHEMA = {"name": wire.Field(wire.string(63, wire.NAME_RE), required=True)}
ADD_NODE_SCHEMA = {
    "node": wire.Field(REF, required=True),
    "role": wire.Field(lambda n, v: swarm.check_role(v)),
}
DEPLOY_SCHEMA = {
    "name": wire.Field(lambda n, v: services.check_name(wire.string(63)(n, v)), required=True),
    "swarm": wire.Field(REF, required=True),
    "compose": wire.Field(lambda n, v: services.check_compose(v), required=True),
}


def register(r: Router) -> None:
    @r.add("POST", "/v1/swarms", auth="admin", schema=CREATE_SCHEMA, status=201)
    def create(ctx: Ctx) -> dict[str, Any]:
        return swarm.create(ctx.state, ctx.body["name"], ctx.actor)

    @r.add("GET", "/v1/swarms", auth="user")
    def list_swarms(ctx: Ctx) -> list[dict[str, Any]]:
        return swarm.list_swarms(ctx.state)

    @r.add("GET", "/v1/swarms/<ref>", auth="user")
    def describe(ctx: Ctx, ref: str) -> dict[str, Any]:
        return swarm.describe(ctx.state, ref)

    @r.add("DELETE", "/v1/swarms/<ref>", auth="admin")
    def delete(ctx: Ctx, ref: str) -> dict[str, Any]:
        return lifecycle.delete(ctx.state, ref, ctx.actor)

    @r.add("POST", "/v1/swarms/<ref>/nodes", auth="admin", schema=ADD_NODE_SCHEMA)
    def add_node(ctx: Ctx, ref: str) -> dict[str, Any]:
        return swarm.add_node(ctx.state, ref, ctx.body["node"], ctx.body.get("role"),
                              ctx.actor)

    @r.add("DELETE", "/v1/swarms/<ref>/nodes/<node>", auth="admin")
    def remove_node(ctx: Ctx, ref: str, node: str) -> dict[str, Any]:
        return swarm.remove_node(ctx.state, ref, node, _force(ctx), ctx.actor)

    @r.add("POST", "/v1/services", auth="admin", schema=DEPLOY_SCHEMA, status=201)
    def deploy(ctx: Ctx) -> dict[str, Any]:
        b = ctx.body
        return services.deploy(ctx.state, b["name"], b["swarm"], b["compose"], ctx.actor)

    @r.add("GET", "/v1/services", auth="user")
    def list_services(ctx: Ctx) -> list[dict[str, Any]]:
        return services.list_services(ctx.state, ctx.query.get("swarm") or None)

    @r.add("GET", "/v1/services/<name>", auth="user")
    def describe_service(ctx: Ctx, name: str) -> dict[str, Any]:
        return services.describe(ctx.state, name)

    @r.add("DELETE", "/v1/services/<name>", auth="admin")
    def remove(ctx: Ctx, name: str) -> dict[str, Any]:
        return services.remove(ctx.state, name, ctx.actor)


def _force(ctx: Ctx) -> bool:
    return ctx.query.get("force", "").lower() in ("1", "true", "yes")

