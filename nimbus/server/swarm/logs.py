"""Stack logs: the containers' output, fetched through the swarm manager's agent.

`start` creates a fetch (server/fetches.py) and queues a `stack.logs` round on the manager;
its result hook appends the lines and, for `--follow`, queues the next round (since the
newest line seen, the stream held open FOLLOW_ROUND_SEC on the manager) while the reader
keeps reading. No worker ever waits for the manager: the client polls `read`.
SECURITY: lines never reach the task store (the hook stores a count), a log or the audit.
"""

from __future__ import annotations

import json
from typing import Any

from nimbus.docker import inspect
from nimbus.docker import logs as logstream
from nimbus.errors import BadRequest, NotFound
from nimbus.server import tasks
from nimbus.server.fetches import Fetch
from nimbus.server.state import State
from nimbus.server.swarm import groups, services
from nimbus.server.swarm import tasks as swarm_tasks

FOLLOW_ROUND_SEC = 2.0
KIND = "stack"


def check_since(value: Any) -> str:
    try:
        return logstream.check_since(value)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def start(state: State, name: str, actor: str, service: str | None = None,
          tail: int | None = None, since: str | None = None,
          follow: bool = False) -> dict[str, Any]:
    """Open a log read of the stack (or one service); {id, name, service, follow}."""
    rec = services.get(state, services.check_name(name))
    if service and service not in (rec.get("compose", {}).get("services") or {}):
        raise NotFound(f"stack {name} has no service {service[:64]!r}")
    s = state.store.read(groups.COLLECTION).get(rec["swarm_id"]) or {"name": rec["swarm_id"]}
    manager = groups.ready_manager(state, s)
    f = state.fetches.create(actor, KIND, name, follow)
    f.extra.update(manager=manager, swarm_id=rec["swarm_id"], service=service,
                   last_time="", last_keys=set())
    _round(state, f, tail=logstream.DEFAULT_TAIL if tail is None else tail, since=since,
           follow_sec=0.0)
    return {"id": f.id, "name": name, "service": service, "follow": follow}


def _round(state: State, f: Fetch, tail: int | None, since: str | None,
           follow_sec: float) -> None:
    payload = {"fetch": f.id, "name": f.target, "service": f.extra["service"], "tail": tail,
               "since": since, "follow_sec": follow_sec}
    swarm_tasks.queue(state, [f.extra["manager"]], swarm_tasks.STACK_LOGS, payload)


def read(state: State, name: str, fetch_id: str, actor: str, cursor: int) -> dict[str, Any]:
    return state.fetches.read(fetch_id, actor, KIND, name, cursor)


def close(state: State, fetch_id: str, actor: str) -> None:
    state.fetches.close(fetch_id, actor)


def on_logs_result(state: State, task: dict[str, Any], status: str, output: str) -> str:
    """Lines go to the fetch (memory), the task store keeps only how many there were."""
    f = state.fetches.get(str((task.get("payload") or {}).get("fetch")))
    if status != "succeeded":
        if f is not None:
            state.fetches.finish(f, " ".join(output.split())[:300] or "the manager failed")
        return output[:300]
    try:
        data = json.loads(output)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("lines"), list):
        if f is not None:
            state.fetches.finish(f, "the manager's answer was not a list of lines")
        return "not a list of lines"
    if f is None:
        return "the reader is gone"
    lines = _fresh(f, [x for x in map(inspect.clean_log_line, data["lines"]) if x])
    state.fetches.append(f, _named(state, f, lines), truncated=data.get("truncated") is True)
    if f.follow and state.fetches.wanted(f):
        since = f.extra["last_time"] or _agent_now(data.get("now"))
        _round(state, f, tail=None, since=since, follow_sec=FOLLOW_ROUND_SEC)
    else:
        state.fetches.finish(f)
    return json.dumps({"lines": len(lines)})


def _agent_now(value: Any) -> str | None:
    try:
        return logstream.check_since(value)
    except ValueError:
        return None


def _fresh(f: Fetch, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop lines a previous round already gave (`since` is inclusive); remember the
    newest time and the lines at exactly that time."""
    last, seen = f.extra["last_time"], f.extra["last_keys"]
    out = [x for x in sorted(lines, key=lambda x: x["time"])
           if x["time"] > last or (x["time"] == last
                                   and (x["task_id"], x["text"]) not in seen)]
    if out:
        newest = out[-1]["time"]
        keys = {(x["task_id"], x["text"]) for x in out if x["time"] == newest}
        f.extra["last_keys"] = keys | (seen if newest == last else set())
        f.extra["last_time"] = newest
    return out


def _named(state: State, f: Fetch, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a reader sees of a line: the Nimbus node name where the swarm node is known."""
    s = state.store.read(groups.COLLECTION).get(f.extra["swarm_id"]) or {}
    all_nodes = state.store.read("nodes")
    names = {m.get("swarm_node_id"): (all_nodes.get(nid) or {}).get("name")
             for nid, m in (s.get("members") or {}).items()}
    return [{"time": x["time"], "service": x["service"], "replica": x["replica"],
             "node": names.get(x["swarm_node_id"]) or x["node"], "stream": x["stream"],
             "text": x["text"]} for x in lines]


TASK_TYPES = (tasks.TaskType(swarm_tasks.STACK_LOGS, on_result=on_logs_result),)
