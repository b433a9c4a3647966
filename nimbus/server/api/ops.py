"""Operations endpoints: Prometheus metrics and the audit log."""

from __future__ import annotations

import ipaddress
from typing import Any

import bottle

from nimbus import wire
from nimbus.errors import BadRequest
from nimbus.server import nodes
from nimbus.server.api.routing import Ctx, Router, respond
from nimbus.server.authn import require_admin

MAX_SINCE = 1e11  # about the year 5138: any later is a typo, not a time


def register(r: Router) -> None:
    @r.add("GET", "/metrics", auth="none")
    def metrics(ctx: Ctx) -> bottle.HTTPResponse:
        # Loopback callers may scrape without credentials; anyone else must be an admin.
        if not ipaddress.ip_address(ctx.source or "0.0.0.0").is_loopback:
            require_admin(r.authn.operator(ctx.environ, b""))
        by_status: dict[str, float] = {}
        for node in nodes.list_nodes(ctx.state):
            key = f'status="{node["status"]}"'
            by_status[key] = by_status.get(key, 0) + 1
        pending = sum(1 for t in ctx.state.store.read("tasks").values()
                      if t["status"] in ("pending", "delivered"))
        text = ctx.state.metrics.render(
            {"nodes": by_status, "tasks_open": {"": pending}})
        resp = respond(200, text)
        resp.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        return resp

    @r.add("GET", "/v1/audit", auth="admin")
    def audit(ctx: Ctx) -> list[dict[str, Any]]:
        return ctx.state.audit.read(_since(ctx.query.get("since", "0")))


def _since(text: str) -> float:
    """`since` as seconds since the epoch: finite and not negative (nan, inf, 1e309 and
    -1 are refused, not compared with every entry's time)."""
    try:
        return float(wire.number(0, MAX_SINCE)("since", float(text[:64])))
    except (ValueError, BadRequest):
        raise BadRequest("since must be seconds since the epoch (a finite number >= 0)"
                         ) from None
