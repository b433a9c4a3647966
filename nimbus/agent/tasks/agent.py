"""Agent handlers about the agent itself: its recent log lines (`nimbus node logs`)."""

from __future__ import annotations

import json
from typing import Any

from nimbus.agent.tasks.base import MAX_OUTPUT, Handler, TaskContext

MAX_TAIL = 2000


def node_logs(ctx: TaskContext, payload: dict[str, Any]) -> str:
    """The newest `tail` lines of the agent's log ring that fit in one task result."""
    tail = payload.get("tail", 100)
    if isinstance(tail, bool) or not isinstance(tail, int):
        raise ValueError("tail must be a whole number")
    lines = ctx.log_ring.tail(max(0, min(tail, MAX_TAIL))) if ctx.log_ring else []
    kept: list[str] = []
    used = 64
    for line in reversed(lines):  # the newest lines win when they do not all fit
        used += len(json.dumps(line)) + 2
        if used > MAX_OUTPUT - 1024:
            break
        kept.append(line)
    return json.dumps({"lines": kept[::-1], "truncated": len(kept) < len(lines)})


HANDLERS: dict[str, Handler] = {"node.logs": node_logs}
