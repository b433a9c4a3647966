"""Agent endpoints: join (token in body), then heartbeat, tasks and renewal over mTLS."""

from __future__ import annotations

from typing import Any

from nimbus import wire
from nimbus.errors import Forbidden
from nimbus.server import enroll, heartbeat, tasks
from nimbus.server.api.routing import Ctx, Router, respond_then


def register(r: Router) -> None:
    @r.add("POST", "/v1/nodes/join", auth="none", schema=wire.JOIN_REQUEST)
    def join(ctx: Ctx) -> Any:
        answer, after_sent = enroll.join(ctx.state, ctx.body, ctx.source)
        return respond_then(200, answer, after_sent)

    @r.add("POST", "/v1/internal/heartbeat", auth="node", schema=wire.HEARTBEAT)
    def beat(ctx: Ctx) -> dict[str, Any]:
        assert ctx.node_id is not None
        return heartbeat.heartbeat(ctx.state, ctx.node_id, ctx.body)

    @r.add("GET", "/v1/internal/tasks/<node_id>", auth="node")
    def fetch(ctx: Ctx, node_id: str) -> list[dict[str, Any]]:
        _same_node(ctx, node_id)
        wait = _wait(ctx.query.get("wait", "0"), ctx.state.config.long_poll_sec)
        return tasks.fetch(ctx.state, node_id, wait)

    @r.add("POST", "/v1/internal/tasks/<task_id>/result", auth="node", schema=wire.TASK_RESULT)
    def result(ctx: Ctx, task_id: str) -> dict[str, Any]:
        assert ctx.node_id is not None
        return tasks.report(ctx.state, ctx.node_id, wire.check_id("task", task_id),
                            ctx.body["status"], ctx.body.get("output", ""))

    @r.add("POST", "/v1/internal/renew", auth="node", schema=wire.RENEW_REQUEST)
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
