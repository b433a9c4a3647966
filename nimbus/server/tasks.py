"""The task queue: per-node FIFO, at-least-once delivery, long-poll wake-ups, results.

A task type is a `TaskType` that a subsystem module lists in its `TASK_TYPES`;
`server/subsystems.py` is the one list of those modules. `render` fills the payload at
delivery time from the current desired state, so a late delivery never carries stale data.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nimbus import wire
from nimbus.errors import BadRequest, Conflict, NotFound, Throttled

if TYPE_CHECKING:
    from nimbus.server.state import State

REDELIVER_AFTER_SEC = 60
# SECURITY: an operation that waits for a node's answer (swarm init/join/deploy, volume
# checks) holds a worker while it waits; at most 1/8 of the pool may, so a slow or silent
# agent, or an admin script firing deploys, can never take the workers every other request
# needs. The rest get 429 and nothing is queued for them.
WAITING_SHARE = 8
_waiting = 0
_waiting_lock = threading.Lock()
KEEP_FINISHED_PER_NODE = 20
Render = Callable[["State", str, dict[str, Any]], dict[str, Any]]
# (state, task, status, output) -> the output to store, e.g. with secrets sealed away
OnResult = Callable[["State", dict[str, Any], str, str], str]


def _as_queued(state: State, node_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return payload


@dataclass(frozen=True)
class TaskType:
    """One kind of task: its name on the wire, how its payload is rendered at delivery, and
    whether a new one replaces an undelivered one for the same node (`coalesce`)."""

    name: str
    render: Render = _as_queued
    coalesce: bool = False
    on_result: OnResult | None = None  # runs on the node's first result, before it is stored


NOOP = TaskType("noop")  # the queue's own type: agents answer "ok" (tests, diagnostics)


def enqueue(state: State, tx_tasks: dict[str, Any], node_ids: list[str], kind: str,
            payload: dict[str, Any] | None = None) -> list[str]:
    """Queue a task for each node inside the caller's transaction on "tasks"."""
    task_type = state.task_types.get(kind)
    if task_type is None:
        raise BadRequest(f"unknown task type {kind}")
    coalesce = task_type.coalesce
    created = []
    for node_id in node_ids:
        if coalesce and any(t["node_id"] == node_id and t["type"] == kind
                            and t["status"] == "pending" for t in tx_tasks.values()):
            continue
        task = {"id": wire.new_id("task"), "node_id": node_id, "type": kind,
                "payload": payload or {}, "status": "pending", "attempts": 0,
                "created_at": round(state.now(), 3), "delivered_at": None,
                "finished_at": None, "output": None}
        tx_tasks[task["id"]] = task
        created.append(task["id"])
    return created


def _due(state: State, task: dict[str, Any], node_id: str) -> bool:
    if task["node_id"] != node_id:
        return False
    if task["status"] == "pending":
        return True
    # Measured on the monotonic clock: a wall-clock step must not redeliver or hold back.
    return task["status"] == "delivered" and state.stamps.age(
        ("delivered", task["id"]), task["delivered_at"]) > REDELIVER_AFTER_SEC


def fetch(state: State, node_id: str, wait: float) -> list[dict[str, Any]]:
    """Due tasks for node_id, oldest first; waits up to `wait` seconds for one to appear."""
    w = state.waiters
    seen = w.version(node_id)
    due = _deliver(state, node_id)
    if not due and wait > 0:
        # Each waiting long-poll holds one of cheroot's fixed worker threads: 70 agents
        # waiting on 64 threads stalled every heartbeat for 23 s. Keep a quarter of the
        # pool (at least 8 threads) for everything else; past that, the agent is told to
        # come back after one long-poll period instead of taking a thread.
        threads = state.config.threads
        if not w.begin_wait(max(1, threads - max(8, threads // 4))):
            raise Throttled("too many agents are long-polling; poll again later",
                            state.config.long_poll_sec or 1)
        try:
            w.wait(node_id, seen, wait)
        finally:
            w.end_wait()
        due = _deliver(state, node_id)
    return due


def _deliver(state: State, node_id: str) -> list[dict[str, Any]]:
    now = state.now()
    if not any(_due(state, t, node_id) for t in state.store.read("tasks").values()):
        return []
    with state.store.transaction("tasks") as tx:
        due = sorted((t for t in tx["tasks"].values() if _due(state, t, node_id)),
                     key=lambda t: t["created_at"])
        for task in due:
            task["status"] = "delivered"
            task["delivered_at"] = round(now, 3)
            state.stamps.mark(("delivered", task["id"]))
            task["attempts"] += 1
    out = []
    for task in due:
        render = state.task_types.get(task["type"], NOOP).render
        out.append({"id": task["id"], "type": task["type"],
                    "payload": render(state, node_id, dict(task["payload"]))})
    return out


def report(state: State, node_id: str, task_id: str, status: str, output: str) -> dict[str, Any]:
    """Record a result; repeating a report for a finished task is a harmless no-op."""
    task = state.store.read("tasks").get(task_id)
    if task is None or task["node_id"] != node_id:
        raise NotFound("no such task for this node")
    kind = state.task_types.get(task["type"])
    if kind is not None and kind.on_result is not None and task["status"] not in (
            "succeeded", "failed"):
        output = kind.on_result(state, task, status, output)
    with state.store.transaction("tasks") as tx:
        task = tx["tasks"].get(task_id)
        if task is None or task["node_id"] != node_id:
            raise NotFound("no such task for this node")
        if task["status"] not in ("succeeded", "failed"):
            task["status"] = status
            task["output"] = output
            task["finished_at"] = round(state.now(), 3)
        _prune(tx["tasks"], node_id)
        result = dict(task)
    state.stamps.forget(("delivered", task_id))
    return public_task(result)


def _prune(tasks: dict[str, Any], node_id: str) -> None:
    done = sorted((t for t in tasks.values() if t["node_id"] == node_id
                   and t["status"] in ("succeeded", "failed")), key=lambda t: t["finished_at"])
    for task in done[:-KEEP_FINISHED_PER_NODE]:
        del tasks[task["id"]]


def public_task(task: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "type", "status", "attempts", "created_at", "delivered_at", "finished_at",
            "output")
    return {k: task.get(k) for k in keys}


def for_node(state: State, node_id: str, limit: int = 20) -> list[dict[str, Any]]:
    tasks = [t for t in state.store.read("tasks").values() if t["node_id"] == node_id]
    return [public_task(t) for t in sorted(tasks, key=lambda t: t["created_at"])[-limit:]]


def drop_node(tx_tasks: dict[str, Any], node_id: str) -> None:
    for task_id in [k for k, t in tx_tasks.items() if t["node_id"] == node_id]:
        del tx_tasks[task_id]


# -- running a task while a request waits (any subsystem) ----------------------------------

_POLL_SEC = 0.1


def queue(state: State, node_ids: list[str], kind: str,
          payload: dict[str, Any] | None = None) -> list[str]:
    """Queue one task per node in its own transaction and wake their long-polls."""
    with state.store.transaction("tasks") as tx:
        ids = enqueue(state, tx["tasks"], node_ids, kind, payload)
    state.waiters.notify(node_ids)
    return ids


def wait(state: State, task_id: str, timeout: float) -> dict[str, Any]:
    """The task's JSON output once it succeeded; Conflict with the node's words otherwise.

    A task no agent picked up within `timeout` is withdrawn, so it never runs later
    behind the operator's back.
    """
    deadline = time.monotonic() + timeout
    while True:
        task = state.store.read("tasks").get(task_id)
        if task is None:
            raise Conflict("the node was deleted before it finished the task")
        if task["status"] in ("succeeded", "failed"):
            break
        if time.monotonic() > deadline:
            with state.store.transaction("tasks") as tx:
                if (tx["tasks"].get(task_id) or {}).get("status") == "pending":
                    del tx["tasks"][task_id]
            raise Conflict(f"node {_node_name(state, task['node_id'])} did not finish "
                           f"{task['type']} within {timeout:.0f} s (is its agent running?)")
        time.sleep(_POLL_SEC)
    output = task.get("output") or ""
    if task["status"] == "failed":
        raise Conflict(f"{task['type']} failed on node {_node_name(state, task['node_id'])}: "
                       f"{output.strip()[:400] or 'no details'}")
    try:
        data = json.loads(output) if output.strip() else {}
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def waiting_slot(state: State) -> Iterator[None]:
    """Hold one of the workers allowed to wait for nodes, or raise Throttled (429)."""
    global _waiting
    limit = max(2, state.config.threads // WAITING_SHARE)
    with _waiting_lock:
        if _waiting >= limit:
            raise Throttled(f"{limit} operations are already waiting for nodes to answer; "
                            "retry in a few seconds", 5)
        _waiting += 1
    try:
        yield
    finally:
        with _waiting_lock:
            _waiting -= 1


def run(state: State, node_id: str, kind: str, payload: dict[str, Any],
        timeout: float) -> dict[str, Any]:
    """Queue one task on a node and wait for its result (`wait`), in a waiting slot."""
    with waiting_slot(state):
        [task_id] = queue(state, [node_id], kind, payload)
        return wait(state, task_id, timeout)


def _node_name(state: State, node_id: str) -> str:
    return str((state.store.read("nodes").get(node_id) or {}).get("name") or node_id)
