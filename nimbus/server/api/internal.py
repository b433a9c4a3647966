"""Agent endpoints: join (token in body), then heartbeat, tasks and renewal over mTLS."""

from __future__ import annotations

import re
from typing import Any

from nimbus import wire
from nimbus.errors import Forbidden
from nimbus.server import enroll, heartbeat, tasks
from nimbus.server.api.routing import Ctx, Router, respond_then

PEM_CSR = re.compile(r"^-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]+"
                     r"-----END CERTIFICATE REQUEST-----\n?$")
JOIN_SCHEMA = {
    "node_id": wire.Field(lambda n, v: wire.check_id("node", v), required=True),
    "secret": wire.Field(wire.string(128), required=True),
    "csr": wire.Field(wire.string(8192, PEM_CSR), required=True),
    "hostname": wire.Field(wire.hostname),
    "arch": wire.Field(wire.arch),
    "agent_version": wire.Field(wire.version),
    "ip_address": wire.Field(wire.ip_address),
    "wireguard_port": wire.Field(wire.number(1, 65535, integer=True)),
    "wireguard_public_key": wire.Field(wire.wg_public_key, required=True),
}
BIG = 2.0**63
USAGE = {"total": wire.Field(wire.number(0, BIG)), "used": wire.Field(wire.number(0, BIG))}
HEARTBEAT_SCHEMA = {
    "cpu": wire.Field(wire.obj({"count": wire.Field(wire.number(0, 65536, integer=True)),
                                "usage": wire.Field(wire.number(0, 1))})),
    "memory": wire.Field(wire.obj(USAGE)),
    "disk": wire.Field(wire.obj(USAGE)),
    "ip_address": wire.Field(wire.ip_address),
    "agent_version": wire.Field(wire.version),
    "hostname": wire.Field(wire.hostname),
    "arch": wire.Field(wire.arch),
    "docker": wire.Field(wire.obj({
        "version": wire.Field(wire.version, required=True),
        "swarm_state": wire.Field(wire.string(16, re.compile(r"^[a-z-]{1,16}$")),
                                  required=True),
        "swarm_node_id": wire.Field(wire.string(64, re.compile(r"^[a-z0-9]{0,64}$"),
                                                min_len=0))})),
}
RESULT_SCHEMA = {
    "status": wire.Field(wire.string(16, re.compile(r"^(succeeded|failed)$")), required=True),
    "output": wire.Field(wire.string(65536, min_len=0)),
}
RENEW_SCHEMA = {"csr": wire.Field(wire.string(8192, PEM_CSR), required=True)}


def register(r: Router) -> None:
    @r.add("POST", "/v1/nodes/join", auth="none", schema=JOIN_SCHEMA)
    def join(ctx: Ctx) -> Any:
        answer, after_sent = enroll.join(ctx.state, ctx.body, ctx.source)
        return respond_then(200, answer, after_sent)

    @r.add("POST", "/v1/internal/heartbeat", auth="node", schema=HEARTBEAT_SCHEMA)
    def beat(ctx: Ctx) -> dict[str, Any]:
        assert ctx.node_id is not None
        return heartbeat.heartbeat(ctx.state, ctx.node_id, ctx.body)

    @r.add("GET", "/v1/internal/tasks/<node_id>", auth="node")
    def fetch(ctx: Ctx, node_id: str) -> list[dict[str, Any]]:
        _same_node(ctx, node_id)
        wait = _wait(ctx.query.get("wait", "0"), ctx.state.config.long_poll_sec)
        return tasks.fetch(ctx.state, node_id, wait)

    @r.add("POST", "/v1/internal/tasks/<task_id>/result", auth="node", schema=RESULT_SCHEMA)
    def result(ctx: Ctx, task_id: str) -> dict[str, Any]:
        assert ctx.node_id is not None
        return tasks.report(ctx.state, ctx.node_id, wire.check_id("task", task_id),
                            ctx.body["status"], ctx.body.get("output", ""))

    @r.add("POST", "/v1/internal/renew", auth="node", schema=RENEW_SCHEMA)
    def renew(ctx: Ctx) -> dict[str, Any]:
        assert ctx.node_id is not None
        return enroll.renew(ctx.state, ctx.node_id, ctx.body["csr"])


def _same_node(ctx: Ctx, node_id: str) -> None:
    wire.check_id("node", node_id)
    if node_id != ctx.node_id:
        raise Forbidden("a node may only read its own tasks")


def _wait(raw: str, cap: int) -> float:
    try:
        value = float(raw)
    except ValueError:
        from nimbus.errors import BadRequest
        raise BadRequest("wait must be a number of seconds") from None
    return max(0.0, min(value, float(cap)))
