"""Agent task handlers: one `@handler("type")` registration per task type, all idempotent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("nimbus.agent.tasks")
MAX_OUTPUT = 65536


@dataclass
class TaskContext:
    """What a handler may touch: the node's ID and its WireGuard interface (None if off)."""

    node_id: str
    wireguard: Any = None  # a WireGuardInterface, or None in --no-wireguard mode
    # Called with the peer list (wire dicts) once applied, so a restart can re-apply it.
    remember_peers: Callable[[list[dict[str, Any]]], None] | None = None


Handler = Callable[[TaskContext, dict[str, Any]], str]
HANDLERS: dict[str, Handler] = {}


def handler(task_type: str) -> Callable[[Handler], Handler]:
    """Register a function (ctx, payload) -> output text; raising marks the task failed."""
    def register(fn: Handler) -> Handler:
        HANDLERS[task_type] = fn
        return fn
    return register


def run_task(ctx: TaskContext, task: dict[str, Any]) -> tuple[str, str]:
    """(status, output) for one delivered task; never raises."""
    kind = str(task.get("type", ""))
    fn = HANDLERS.get(kind)
    if fn is None:
        return "failed", f"this agent does not know the task type {kind[:64]!r}"
    payload = task.get("payload") or {}
    try:
        output = fn(ctx, payload if isinstance(payload, dict) else {})
        status = "succeeded"
    except Exception as exc:  # noqa: BLE001 - any handler failure is reported, not fatal
        output = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
        status = "failed"
    log.info("task %s (%s) %s", task.get("id"), kind, status)
    return status, (output or "")[:MAX_OUTPUT]


@handler("noop")
def _noop(ctx: TaskContext, payload: dict[str, Any]) -> str:
    return "ok"


@handler("update_wireguard_peers")
def _update_peers(ctx: TaskContext, payload: dict[str, Any]) -> str:
    from nimbus.wireguard.config import Peer, validate_peers

    raw = payload.get("peers")
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise ValueError("payload has no peers list")
    peers = validate_peers(Peer.from_dict(p) for p in raw)
    if ctx.wireguard is None:
        note = f"WireGuard is disabled on this node (--no-wireguard); {len(peers)} peers noted"
    else:
        result = ctx.wireguard.apply_peers(peers)
        note = (f"{len(peers)} peers: {result['added']} added, {result['updated']} updated, "
                f"{result['removed']} removed")
    if ctx.remember_peers is not None:
        ctx.remember_peers(raw)
    return note
