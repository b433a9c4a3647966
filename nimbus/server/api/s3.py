"""S3 instances (SeaweedFS across nodes): thin handlers."""

from __future__ import annotations

from typing import Any

from nimbus import wire
from nimbus.errors import BadRequest
from nimbus.seaweed import plan
from nimbus.server.api.routing import Ctx, Router
from nimbus.server.s3 import instances

REF = wire.string(64)  # an id or a name; looked up, never used as a path or argv
MAX_NODES = 64


def _node_refs(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > MAX_NODES:
        raise BadRequest(f"{name} must be a list of 1 to {MAX_NODES} node names or ids")
    return [REF(f"{name}[{i}]", v) for i, v in enumerate(value)]


NODES = wire.described(_node_refs, {"type": "array", "minItems": 1, "maxItems": MAX_NODES,
                                    "items": {"type": "string", "maxLength": 64}})
NAME = wire.described(lambda n, v: instances.check_name(v),
                     {"type": "string", "pattern": plan.NAME_RE.pattern})
CREATE_SCHEMA = {
    "name": wire.Field(NAME, required=True),
    "nodes": wire.Field(NODES, required=True),
    "replication": wire.Field(wire.one_of(*sorted(plan.REPLICATIONS))),
}
UPDATE_SCHEMA = {"replication": wire.Field(wire.one_of(*sorted(plan.REPLICATIONS)),
                                           required=True)}
CREDENTIALS_SCHEMA = {"rotate": wire.Field(wire.boolean)}


def register(r: Router) -> None:
    @r.add("POST", "/v1/s3", auth="admin", schema=CREATE_SCHEMA, status=201)
    def create(ctx: Ctx) -> dict[str, Any]:
        b = ctx.body
        return instances.create(ctx.state, b["name"], b["nodes"], b.get("replication"),
                                ctx.actor)

    @r.add("GET", "/v1/s3", auth="user")
    def list_instances(ctx: Ctx) -> list[dict[str, Any]]:
        return instances.list_instances(ctx.state)

    @r.add("GET", "/v1/s3/<ref>", auth="user")
    def describe(ctx: Ctx, ref: str) -> dict[str, Any]:
        return instances.describe(ctx.state, ref)

    @r.add("PATCH", "/v1/s3/<ref>", auth="admin", schema=UPDATE_SCHEMA)
    def update(ctx: Ctx, ref: str) -> dict[str, Any]:
        return instances.update(ctx.state, ref, ctx.body["replication"], ctx.actor)

    @r.add("POST", "/v1/s3/<ref>/credentials", auth="admin", schema=CREDENTIALS_SCHEMA)
    def credentials(ctx: Ctx, ref: str) -> dict[str, Any]:
        return instances.credentials(ctx.state, ref, bool(ctx.body.get("rotate")), ctx.actor)

    @r.add("DELETE", "/v1/s3/<ref>", auth="admin")
    def delete(ctx: Ctx, ref: str) -> dict[str, Any]:
        purge = ctx.query.get("purge_data", "").lower() in ("1", "true", "yes")
        return instances.delete(ctx.state, ref, purge, ctx.actor)
