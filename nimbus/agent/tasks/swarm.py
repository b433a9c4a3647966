"""Agent handlers of the swarm and stack tasks, run against the node's own Docker Engine.

Each handler is idempotent (delivery is at least once) and answers with one JSON object.
SECURITY: the join token arrives in the `swarm.join` payload and goes straight into the
Engine API request body; `swarm.init` returns the new tokens to the control plane in its
result (which seals them). Neither is logged: handlers log nothing of their payload.
"""

from __future__ import annotations

import json
import time
from typing import Any

from nimbus.agent.tasks.base import MAX_OUTPUT, Handler, TaskContext
from nimbus.docker import logs as logstream
from nimbus.docker import plan
from nimbus.docker.engine import DockerEngine, DockerError

MAX_FOLLOW_SEC = 5.0  # one round of a followed log; the control plane asks for the next


def engine(ctx: TaskContext) -> DockerEngine:
    eng = DockerEngine(ctx.docker_host)
    if not eng.available():
        raise DockerError(f"no Docker Engine on this node (socket {eng.socket_path} missing "
                          "or no docker CLI)")
    return eng


def _addr(payload: dict[str, Any], key: str = "addr") -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"payload has no {key}")
    return value


def _result(**data: Any) -> str:
    return json.dumps(data, sort_keys=True)


def init(ctx: TaskContext, payload: dict[str, Any]) -> str:
    eng = engine(ctx)
    info = eng.swarm_init(_addr(payload))
    # SECURITY: the tokens travel back in the result over mTLS; the server seals them.
    return _result(swarm_node_id=info["swarm_node_id"], swarm_id=info["swarm_id"],
                   tokens=eng.join_tokens())


def join(ctx: TaskContext, payload: dict[str, Any]) -> str:
    token = payload.get("token")
    if not isinstance(token, str) or not token:
        raise ValueError("the control plane sent no join token (the swarm has no manager?)")
    info = engine(ctx).swarm_join(_addr(payload), _addr(payload, "manager_addr"), token)
    return _result(swarm_node_id=info["swarm_node_id"], swarm_state=info["swarm_state"])


def leave(ctx: TaskContext, payload: dict[str, Any]) -> str:
    info = engine(ctx).swarm_leave()
    return _result(swarm_state=info["swarm_state"])


def promote(ctx: TaskContext, payload: dict[str, Any]) -> str:
    engine(ctx).promote(str(payload.get("swarm_node_id", "")))
    return _result(promoted=payload.get("swarm_node_id"))


def node_rm(ctx: TaskContext, payload: dict[str, Any]) -> str:
    engine(ctx).node_rm(str(payload.get("swarm_node_id", "")))
    return _result(removed=payload.get("swarm_node_id"))


def inspect(ctx: TaskContext, payload: dict[str, Any]) -> str:
    eng = engine(ctx)
    out: dict[str, Any] = {"nodes": eng.nodes()}
    if payload.get("stack"):
        out.update(eng.stack_state(str(payload["stack"])))
    return _result(**out)


def stack_deploy(ctx: TaskContext, payload: dict[str, Any]) -> str:
    compose = payload.get("compose")
    if not isinstance(compose, dict):
        raise ValueError("payload has no compose file")
    services = engine(ctx).stack_deploy(str(payload.get("name", "")), compose)
    return _result(services=services)


def stack_rm(ctx: TaskContext, payload: dict[str, Any]) -> str:
    engine(ctx).stack_rm(str(payload.get("name", "")))
    return _result(removed=payload.get("name"))


def stack_logs(ctx: TaskContext, payload: dict[str, Any]) -> str:
    """Log lines of a stack's services; SECURITY: they may hold secrets, so they are only
    returned (mTLS), never logged here."""
    name = plan.check_stack_name(str(payload.get("name", "")))
    service = payload.get("service") or None
    tail = payload.get("tail")
    since = payload.get("since") or None
    follow = payload.get("follow_sec") or 0
    if not isinstance(follow, (int, float)) or isinstance(follow, bool):
        raise ValueError("follow_sec must be a number")
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int)):
        raise ValueError("tail must be a whole number")
    now = time.time()
    out = engine(ctx).stack_logs(
        name, str(service) if service else None, tail,
        logstream.since_arg(str(since), now) if since else None,
        max(0.0, min(float(follow), MAX_FOLLOW_SEC)), MAX_OUTPUT - 4096)
    return _result(now=f"{now:.9f}", **out)


HANDLERS: dict[str, Handler] = {
    "swarm.init": init,
    "swarm.join": join,
    "swarm.leave": leave,
    "swarm.promote": promote,
    "swarm.node_rm": node_rm,
    "swarm.inspect": inspect,
    "stack.deploy": stack_deploy,
    "stack.rm": stack_rm,
    "stack.logs": stack_logs,
}
