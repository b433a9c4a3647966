"""Node logs: an agent's own recent log lines (`nimbus node logs`), fetched by a task.

The agent keeps a bounded ring of its log lines, masked (agent/logring.py); a `node.logs`
task returns its tail, which the result hook hands to the reader's fetch (memory only,
server/fetches.py). Nothing waits in a worker: the client polls `read`.
"""

from __future__ import annotations

import json
from typing import Any

from nimbus.errors import Conflict
from nimbus.server import nodes, tasks
from nimbus.server.registry import Subsystem
from nimbus.server.state import State

NODE_LOGS = "node.logs"
KIND = "node"
MAX_TAIL = 2000


def start(state: State, ref: str, actor: str, tail: int = 100) -> dict[str, Any]:
    node_id = nodes.resolve(state, ref)
    node = state.store.read("nodes")[node_id]
    status = nodes.public_node(state, node)["status"]
    if status not in ("ready", "draining"):
        raise Conflict(f"node {node['name']} is {status}: its agent cannot send its logs")
    f = state.fetches.create(actor, KIND, node_id)
    tasks.queue(state, [node_id], NODE_LOGS, {"fetch": f.id, "tail": tail})
    return {"id": f.id, "node": node["name"]}


def read(state: State, ref: str, fetch_id: str, actor: str, cursor: int) -> dict[str, Any]:
    return state.fetches.read(fetch_id, actor, KIND, nodes.resolve(state, ref), cursor)


def on_result(state: State, task: dict[str, Any], status: str, output: str) -> str:
    f = state.fetches.get(str((task.get("payload") or {}).get("fetch")))
    if f is None:
        return "the reader is gone"
    if status != "succeeded":
        state.fetches.finish(f, " ".join(output.split())[:300] or "the agent failed")
        return output[:300]
    try:
        data = json.loads(output)
    except ValueError:
        data = None
    lines = data.get("lines") if isinstance(data, dict) else None
    if not isinstance(lines, list):
        state.fetches.finish(f, "the agent's answer was not a list of lines")
        return "not a list of lines"
    clean = ["".join(c if c.isprintable() else "?" for c in x[:2000])
             for x in lines[:MAX_TAIL] if isinstance(x, str)]
    state.fetches.append(f, clean, truncated=data.get("truncated") is True)
    state.fetches.finish(f)
    return json.dumps({"lines": len(clean)})


SUBSYSTEM = Subsystem(name="nodelogs",
                      task_types=(tasks.TaskType(NODE_LOGS, on_result=on_result),))
