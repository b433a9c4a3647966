"""Reads of swarms and stacks: answered at once from the last known state, refreshed behind.

`swarm describe` and `service describe` never wait for a manager in a worker thread (70
slow reads used to freeze every client). Each read queues at most one `swarm.inspect` per
object: none while one is unfinished on the current manager, none within MIN_INTERVAL of
the last; the answer says how old it is (`refreshed_at`, `age`) and whether a refresh is
on its way (`refreshing`), so a client that wants fresh data asks again shortly.
The result hook (`on_inspect_result`) is the one place that records what a manager saw;
everything in it is untrusted input (`docker.inspect.clean_*`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from nimbus.docker import inspect
from nimbus.server import tasks
from nimbus.server.state import State
from nimbus.server.swarm import groups, services
from nimbus.server.swarm import tasks as swarm_tasks

log = logging.getLogger("nimbus.swarm")
MIN_INTERVAL = 2.0  # seconds between two refreshes of one object
UNFINISHED = ("pending", "delivered")


def _key(payload: dict[str, Any]) -> tuple[Any, Any]:
    return payload.get("swarm_id"), payload.get("stack")


def request_refresh(state: State, swarm_id: str, stack: str | None = None) -> bool:
    """Queue one inspect of this swarm (and stack) unless one is due or recent; True when
    one is on its way. Reads tasks.json; writes it only when it queues."""
    s = state.store.read(groups.COLLECTION).get(swarm_id) or {}
    manager = s.get("manager")
    if not manager:
        return False
    want = (swarm_id, stack)
    verdict = _verdict(state, state.store.read("tasks"), manager, want)
    if verdict is not None:
        return verdict
    with state.store.transaction("tasks") as tx:  # again under the lock: concurrent reads
        verdict = _verdict(state, tx["tasks"], manager, want)
        if verdict is None:
            payload = {"swarm_id": swarm_id, **({"stack": stack} if stack else {})}
            tasks.enqueue(state, tx["tasks"], [manager], swarm_tasks.INSPECT, payload)
    if verdict is None:
        state.waiters.notify([manager])
    return verdict is not False


def _verdict(state: State, all_tasks: dict[str, Any], manager: str,
             want: tuple[Any, Any]) -> bool | None:
    """True: a refresh is on its way; False: one ran lately; None: queue one."""
    latest = 0.0
    for t in all_tasks.values():
        if t["type"] != swarm_tasks.INSPECT or _key(t.get("payload") or {}) != want:
            continue
        if t["status"] in UNFINISHED and t["node_id"] == manager:
            return True  # coalesced: that one answers for everybody
        latest = max(latest, float(t.get("created_at") or 0))
    return False if state.now() - latest < MIN_INTERVAL else None


def _age(state: State, at: Any) -> float | None:
    return round(max(0.0, state.now() - at), 1) if isinstance(at, (int, float)) else None


def describe_swarm(state: State, ref: str) -> dict[str, Any]:
    s = groups.find(state.store.read(groups.COLLECTION), ref)
    refreshing = request_refresh(state, s["id"])
    out = groups.public(state, s)
    return {**out, "age": _age(state, s.get("refreshed_at")), "refreshing": refreshing}


def describe_stack(state: State, name: str) -> dict[str, Any]:
    rec = services.get(state, services.check_name(name))
    refreshing = request_refresh(state, rec["swarm_id"], rec["name"])
    out = services.public(state, rec, with_tasks=True)
    return {**out, "age": _age(state, rec.get("refreshed_at")), "refreshing": refreshing}


# -- the result hook -------------------------------------------------------------------------

def on_inspect_result(state: State, task: dict[str, Any], status: str, output: str) -> str:
    """Record what the manager reports; store only a summary of it in the task."""
    swarm_id, stack = _key(task.get("payload") or {})
    if status != "succeeded":
        return output[:400]
    try:
        data = json.loads(output)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return "the manager's answer was not a JSON object"
    nodes = _clean_nodes(data.get("nodes"))
    with state.store.transaction(groups.COLLECTION, services.COLLECTION) as tx:
        s = tx[groups.COLLECTION].get(str(swarm_id))
        if s is not None and nodes is not None:
            s["seen"], s["refreshed_at"] = nodes, round(state.now(), 3)
        rec = tx[services.COLLECTION].get(str(stack)) if stack else None
        if rec is not None and rec.get("swarm_id") == swarm_id:
            services.record_report(state, rec, data)
    return json.dumps({"nodes": len(nodes or {}), "services": len(data.get("services") or [])
                       if isinstance(data.get("services"), list) else 0})


def _clean_nodes(report: Any) -> dict[str, dict[str, Any]] | None:
    if not isinstance(report, list):
        return None
    out: dict[str, dict[str, Any]] = {}
    for n in report[:1000]:
        if not isinstance(n, dict) or not isinstance(n.get("swarm_node_id"), str):
            continue
        out[n["swarm_node_id"][:64]] = {
            k: inspect.clean_text(n.get(k), 64)
            for k in ("state", "availability", "engine_version", "role")}
    return out


TASK_TYPES = (tasks.TaskType(swarm_tasks.INSPECT, on_result=on_inspect_result),)
