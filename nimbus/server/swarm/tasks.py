"""The swarm task types (server side) and running one task on a node while a request waits.

Payloads are filled at delivery (`render`) from the current records, so the join token
is only ever in a delivered payload (memory, then mTLS) and never in the task store.
SECURITY: the `swarm.init` result carries the new swarm's join tokens back; its result
hook seals them into the swarm record and stores the output without them.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from nimbus.errors import Conflict
from nimbus.server import tasks

if TYPE_CHECKING:
    from nimbus.server.state import State

INIT, JOIN, LEAVE = "swarm.init", "swarm.join", "swarm.leave"
PROMOTE, NODE_RM, INSPECT = "swarm.promote", "swarm.node_rm", "swarm.inspect"
STACK_DEPLOY, STACK_RM, STACK_LOGS = "stack.deploy", "stack.rm", "stack.logs"
DEFAULT_TIMEOUT = 90.0


def token_context(swarm_id: str, role: str) -> str:
    """Associated data of a sealed token: it opens only as this swarm's token for this role."""
    return f"swarm-token:{swarm_id}:{role}"


def _node_ip(state: State, node_id: str) -> str:
    return str((state.store.read("nodes").get(node_id) or {}).get("wireguard_ip") or "")


def _swarm(state: State, swarm_id: Any) -> dict[str, Any]:
    return state.store.read("swarms").get(str(swarm_id)) or {}


# -- render (delivery time) ---------------------------------------------------------------

def render_init(state: State, node_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "addr": _node_ip(state, node_id)}


def render_join(state: State, node_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    s = _swarm(state, payload.get("swarm_id"))
    role = "manager" if payload.get("role") == "manager" else "worker"
    sealed = (s.get("tokens") or {}).get(role)
    out = {**payload, "addr": _node_ip(state, node_id),
           "manager_addr": _node_ip(state, s.get("manager") or "")}
    if sealed:
        # SECURITY: opened only into the delivered payload, never written back.
        out["token"] = state.box.open(sealed, token_context(s["id"], role))
    return out


# -- results ------------------------------------------------------------------------------

def on_init_result(state: State, task: dict[str, Any], status: str, output: str) -> str:
    """Seal the join tokens of a new swarm into its record; store the output without them."""
    if status != "succeeded":
        return output
    try:
        data = json.loads(output)
    except ValueError:
        return output
    if not isinstance(data, dict):
        return output
    tokens = data.pop("tokens", None) or {}
    swarm_id = str(task.get("payload", {}).get("swarm_id"))
    if isinstance(tokens, dict) and tokens:
        with state.store.transaction("swarms") as tx:
            s = tx["swarms"].get(swarm_id)
            if s is not None:
                s["tokens"] = {role: state.box.seal(str(tok), token_context(swarm_id, role))
                               for role, tok in tokens.items()
                               if role in ("worker", "manager") and tok}
    return json.dumps(data)


# -- running tasks ------------------------------------------------------------------------

queue = tasks.queue  # one task per node, their long-polls woken; returns the task ids
waiting_slot = tasks.waiting_slot  # around a queue and its waits (429 past 1/8 of the pool)


def wait(state: State, task_id: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """The task's JSON output once it succeeded; Conflict with the node's words otherwise."""
    return tasks.wait(state, task_id, timeout)


def wait_all(state: State, task_ids: list[str], timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Wait for every task; the failure messages (empty when all succeeded)."""
    failed = []
    deadline = time.monotonic() + timeout
    for task_id in task_ids:
        try:
            wait(state, task_id, max(0.0, deadline - time.monotonic()))
        except Conflict as exc:
            failed.append(str(exc))
    return failed


def run(state: State, node_id: str, kind: str, payload: dict[str, Any],
        timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Queue one task on a node (the swarm's manager, usually) and wait for its result."""
    if not node_id:
        raise Conflict("the swarm has no manager to run this on")
    return tasks.run(state, node_id, kind, payload, timeout)


TASK_TYPES = (
    tasks.TaskType(INIT, render_init, on_result=on_init_result),
    tasks.TaskType(JOIN, render_join),
    *(tasks.TaskType(kind) for kind in (LEAVE, PROMOTE, NODE_RM, STACK_RM)),
)  # stack.deploy: services.py, swarm.inspect: views.py, stack.logs: logs.py (their hooks)
