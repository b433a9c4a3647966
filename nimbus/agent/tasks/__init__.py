"""Agent task handlers, one module per subsystem; `run_task` dispatches a delivered task.

A subsystem module (e.g. `wireguard`) exports `HANDLERS: {task type: handler}` and, when
it needs a program on the node, `TOOLS: {tool: probe}`; `MODULES` is the one list of them,
so a new subsystem's tasks are one module plus one entry here.
"""

from __future__ import annotations

import logging
from typing import Any

from nimbus.agent.tasks import agent, s3, swarm, volumes, wireguard
from nimbus.agent.tasks.base import MAX_OUTPUT, Handler, Probe, TaskContext

__all__ = ["HANDLERS", "MODULES", "Handler", "TaskContext", "probe_tools", "run_task"]
log = logging.getLogger("nimbus.agent.tasks")
MODULES = (wireguard, swarm, volumes, s3, agent)


def _noop(ctx: TaskContext, payload: dict[str, Any]) -> str:
    return "ok"


def _handlers() -> dict[str, Handler]:
    found: dict[str, Handler] = {"noop": _noop}  # the queue's own type
    for module in MODULES:
        for kind, fn in module.HANDLERS.items():
            if kind in found:
                raise RuntimeError(f"task type {kind} has two handlers")
            found[kind] = fn
    return found


HANDLERS = _handlers()
TOOLS: dict[str, Probe] = {name: probe for module in MODULES
                           for name, probe in getattr(module, "TOOLS", {}).items()}


def probe_tools(config: Any) -> dict[str, str]:
    """{tool: version} of every tool a subsystem needs that this node has; never raises."""
    found: dict[str, str] = {}
    for name, probe in TOOLS.items():
        try:
            version = probe(config)
        except Exception as exc:  # noqa: BLE001 - a broken probe means "cannot run it"
            log.warning("probing %s failed: %s", name, exc)
            version = None
        if version:
            found[name] = version[:64]
    return found


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
