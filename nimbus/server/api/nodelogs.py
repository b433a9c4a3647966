"""`nimbus node logs`: an agent's own recent log lines (thin handlers)."""

from __future__ import annotations

from typing import Any

from nimbus import wire
from nimbus.server import nodelogs
from nimbus.server.api.routing import Ctx, Router
from nimbus.server.api.swarm import cursor

SCHEMA = {"tail": wire.Field(wire.number(0, nodelogs.MAX_TAIL, integer=True))}


def register(r: Router) -> None:
    @r.add("POST", "/v1/nodes/<ref>/logs", auth="admin", schema=SCHEMA, status=201)
    def open_logs(ctx: Ctx, ref: str) -> dict[str, Any]:
        return nodelogs.start(ctx.state, ref, ctx.actor, int(ctx.body.get("tail", 100)))

    @r.add("GET", "/v1/nodes/<ref>/logs/<fetch_id>", auth="admin")
    def read_logs(ctx: Ctx, ref: str, fetch_id: str) -> dict[str, Any]:
        return nodelogs.read(ctx.state, ref, fetch_id, ctx.actor, cursor(ctx))
