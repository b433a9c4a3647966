"""NFS volumes (thin handlers)."""

from __future__ import annotations

from typing import Any

from nimbus import wire
from nimbus.server.api.routing import Ctx, Router
from nimbus.server.volumes import records

REF = wire.string(64)  # an id or a name; looked up, never used as a path or argv
CREATE_SCHEMA = {
    "name": wire.Field(wire.string(63), required=True),  # checked by records.create
    "node": wire.Field(REF, required=True),
    "swarm": wire.Field(REF, required=True),
    "folder": wire.Field(wire.string(1024)),
    "root_squash": wire.Field(wire.boolean),
}


def register(r: Router) -> None:
    @r.add("POST", "/v1/volumes", auth="admin", schema=CREATE_SCHEMA, status=201)
    def create(ctx: Ctx) -> dict[str, Any]:
        b = ctx.body
        return records.create(ctx.state, b["name"], b["node"], b["swarm"], b.get("folder"),
                              b.get("root_squash", True), ctx.actor)

    @r.add("GET", "/v1/volumes", auth="user")
    def list_volumes(ctx: Ctx) -> list[dict[str, Any]]:
        return records.list_volumes(ctx.state)

    @r.add("GET", "/v1/volumes/<ref>", auth="user")
    def describe(ctx: Ctx, ref: str) -> dict[str, Any]:
        return records.describe(ctx.state, ref)

    @r.add("DELETE", "/v1/volumes/<ref>", auth="admin")
    def delete(ctx: Ctx, ref: str) -> dict[str, Any]:
        force = ctx.query.get("force", "").lower() in ("1", "true", "yes")
        return records.delete(ctx.state, ref, force, ctx.actor)
