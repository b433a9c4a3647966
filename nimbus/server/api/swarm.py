"""Swarm groups and compose services (thin handlers)."""

from __future__ import annotations

from typing import Any

from nimbus import wire
from nimbus.docker import inspect
from nimbus.docker import logs as logstream
from nimbus.errors import BadRequest
from nimbus.server.api.routing import Ctx, Router
from nimbus.server.swarm import groups as swarm
from nimbus.server.swarm import lifecycle, logs, services, views

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
    # SECURITY: values are secrets (sealed at rest); a bad one is named by its key only.
    "env": wire.Field(wire.described(lambda n, v: services.check_env(v), {
        "type": "object", "additionalProperties": {"type": "string"}})),
    # Accept privileged containers, host namespaces and host mounts (docs/workloads.md).
    "allow_privileged": wire.Field(wire.boolean),
    "volumes": wire.Field(wire.described(lambda n, v: services.check_volume_map(v), {
        "type": "object", "additionalProperties": {"type": "string"}})),  # compose vol -> NFS
}
SCALE_SCHEMA = {"replicas": wire.Field(wire.described(
    lambda n, v: _replicas(v), {"type": "object", "additionalProperties": {
        "type": "integer", "minimum": 0, "maximum": inspect.MAX_REPLICAS}}), required=True)}
LOGS_SCHEMA = {
    "service": wire.Field(wire.string(63)),
    "tail": wire.Field(wire.number(0, logstream.MAX_TAIL, integer=True)),
    "since": wire.Field(wire.described(lambda n, v: logs.check_since(v), {"type": "string"})),
    "follow": wire.Field(wire.boolean),
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
        return views.describe_swarm(ctx.state, ref)

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
        return services.deploy(ctx.state, b["name"], b["swarm"], b["compose"], ctx.actor,
                               env=b.get("env"), volumes=b.get("volumes"),
                               allow_privileged=b.get("allow_privileged", False))

    @r.add("GET", "/v1/services", auth="user")
    def list_services(ctx: Ctx) -> list[dict[str, Any]]:
        return services.list_services(ctx.state, ctx.query.get("swarm") or None)

    @r.add("GET", "/v1/services/<name>", auth="user")
    def describe_service(ctx: Ctx, name: str) -> dict[str, Any]:
        return views.describe_stack(ctx.state, name)

    @r.add("DELETE", "/v1/services/<name>", auth="admin")
    def remove(ctx: Ctx, name: str) -> dict[str, Any]:
        return services.remove(ctx.state, name, ctx.actor)

    @r.add("POST", "/v1/services/<name>/scale", auth="admin", schema=SCALE_SCHEMA)
    def scale(ctx: Ctx, name: str) -> dict[str, Any]:
        return services.scale(ctx.state, name, ctx.body["replicas"], ctx.actor)

    @r.add("POST", "/v1/services/<name>/stop", auth="admin")
    def stop(ctx: Ctx, name: str) -> dict[str, Any]:
        return services.stop(ctx.state, name, ctx.actor)

    @r.add("POST", "/v1/services/<name>/start", auth="admin")
    def start(ctx: Ctx, name: str) -> dict[str, Any]:
        return services.start(ctx.state, name, ctx.actor)

    # Container output often carries secrets: reading it is for admins.
    @r.add("POST", "/v1/services/<name>/logs", auth="admin", schema=LOGS_SCHEMA, status=201)
    def open_logs(ctx: Ctx, name: str) -> dict[str, Any]:
        b = ctx.body
        return logs.start(ctx.state, name, ctx.actor, service=b.get("service"),
                          tail=b.get("tail"), since=b.get("since"),
                          follow=bool(b.get("follow")))

    @r.add("GET", "/v1/services/<name>/logs/<fetch_id>", auth="admin")
    def read_logs(ctx: Ctx, name: str, fetch_id: str) -> dict[str, Any]:
        return logs.read(ctx.state, name, fetch_id, ctx.actor, cursor(ctx))

    @r.add("DELETE", "/v1/services/<name>/logs/<fetch_id>", auth="admin")
    def close_logs(ctx: Ctx, name: str, fetch_id: str) -> dict[str, Any]:
        logs.close(ctx.state, fetch_id, ctx.actor)
        return {"id": fetch_id, "closed": True}


def cursor(ctx: Ctx) -> int:
    """The `cursor` query parameter of a log read: a whole number (0 by default)."""
    raw = ctx.query.get("cursor", "0")
    if not raw.isdigit() or len(raw) > 12:
        raise BadRequest("cursor must be a whole number")
    return int(raw)


def _replicas(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not value or len(value) > inspect.MAX_SERVICES:
        raise BadRequest(f"replicas must map 1 to {inspect.MAX_SERVICES} service names to "
                         "counts")
    for name, n in value.items():
        wire.string(63)("service name", name)
        wire.number(0, inspect.MAX_REPLICAS, integer=True)(f"replicas of {name[:63]}", n)
    return value


def _force(ctx: Ctx) -> bool:
    return ctx.query.get("force", "").lower() in ("1", "true", "yes")

