"""Swarm groups: members, roles, the manager, join tokens (sealed at rest), node removal.

A swarm record (collection `swarms`):
    {id, name, created_at, manager: node id | None,
     members: {node_id: {role, swarm_node_id, added_at}},
     tokens: {worker: sealed, manager: sealed},          # SECURITY: SecretBox, never clear
     seen: {swarm_node_id: {state, availability, engine_version, role}}, refreshed_at}
Work on nodes goes through typed tasks (`server/swarm/tasks.py`); the operations here wait
for their result so the CLI can say at once whether Docker agreed.
"""

from __future__ import annotations

import logging
from typing import Any

from nimbus import wire
from nimbus.errors import BadRequest, Conflict, NotFound
from nimbus.server import hooks, nodes, refs
from nimbus.server.state import State
from nimbus.server.swarm import tasks as swarm_tasks

log = logging.getLogger("nimbus.swarm")
COLLECTION = "swarms"
INSPECT_TIMEOUT = 10.0


# -- lookups ------------------------------------------------------------------------------

def find(swarms: dict[str, Any], ref: str) -> dict[str, Any]:
    """The swarm with this id or name; NotFound otherwise."""
    return refs.find(swarms, ref, "swarm")


def find_node(state: State, ref: str) -> dict[str, Any]:
    """A node by id or name (the one resolver, nodes.resolve)."""
    return state.store.read("nodes")[nodes.resolve(state, ref)]


def swarm_of(swarms: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    return next((s for s in swarms.values() if node_id in s["members"]), None)


# -- views --------------------------------------------------------------------------------

def public(state: State, s: dict[str, Any]) -> dict[str, Any]:
    """{id, name, status, manager, nodes: [{node_id, name, role, state, ...}], ...}."""
    all_nodes = state.store.read("nodes")
    members = []
    for node_id, m in sorted(s["members"].items(),
                             key=lambda i: (i[1]["role"] != "manager", i[0])):
        seen = s.get("seen", {}).get(m.get("swarm_node_id") or "", {})
        node = all_nodes.get(node_id, {})
        members.append({"node_id": node_id, "name": node.get("name"),
                        "role": seen.get("role") or m["role"],
                        "state": seen.get("state") or "unknown",
                        "availability": seen.get("availability") or "unknown",
                        "engine_version": seen.get("engine_version")
                        or (node.get("docker") or {}).get("version"),
                        "swarm_node_id": m.get("swarm_node_id")})
    status = "empty" if not members else "active"
    return {"id": s["id"], "name": s["name"], "status": status, "manager": s.get("manager"),
            "nodes": members, "created_at": s["created_at"],
            "refreshed_at": s.get("refreshed_at")}


def list_swarms(state: State) -> list[dict[str, Any]]:
    swarms = state.store.read(COLLECTION)
    return [public(state, s) for s in sorted(swarms.values(), key=lambda s: s["name"])]


# -- operations ---------------------------------------------------------------------------

def create(state: State, name: str, actor: str) -> dict[str, Any]:
    with state.store.transaction(COLLECTION) as tx:
        swarms = tx[COLLECTION]
        if any(s["name"] == name for s in swarms.values()):
            raise Conflict(f"a swarm named {name} already exists")
        s = {"id": wire.new_id("swarm"), "name": name, "created_at": round(state.now(), 3),
             "manager": None, "members": {}, "tokens": {}, "seen": {}, "refreshed_at": None}
        swarms[s["id"]] = s
    state.audit.record("swarm.created", state.now(), swarm_id=s["id"], actor=actor)
    return public(state, s)


def describe(state: State, ref: str) -> dict[str, Any]:
    """The swarm after an admin operation: its members refreshed from the manager when it
    answers in time (reads go through views.describe_swarm, which never waits)."""
    s = find(state.store.read(COLLECTION), ref)
    if s.get("manager"):
        try:
            refresh(state, s["id"], timeout=INSPECT_TIMEOUT)
        except Conflict as exc:  # the manager is down: show what we knew
            log.info("swarm %s: refresh failed: %s", s["id"], exc)
        s = find(state.store.read(COLLECTION), s["id"])
    return public(state, s)


def refresh(state: State, swarm_id: str, timeout: float) -> None:
    """Inspect now and wait; the task's result hook (views) records what the manager saw."""
    s = state.store.read(COLLECTION)[swarm_id]
    swarm_tasks.run(state, s["manager"], swarm_tasks.INSPECT, {"swarm_id": swarm_id}, timeout)


def ready_manager(state: State, s: dict[str, Any]) -> str:
    """The node id of the swarm's manager; Conflict (one line) unless its agent is ready."""
    manager = s.get("manager")
    if not manager:
        raise Conflict(f"swarm {s['name']} has no nodes yet: swarm add-node first")
    node = state.store.read("nodes").get(manager)
    status = nodes.public_node(state, node)["status"] if node else "deleted"
    if status != "ready":
        name = (node or {}).get("name") or manager
        raise Conflict(f"swarm {s['name']} has no ready manager (its manager {name} is "
                       f"{status}); bring its agent back or add another manager")
    return str(manager)


def _check_can_join(state: State, node: dict[str, Any]) -> None:
    live = nodes.public_node(state, node)
    if live["status"] != "ready":
        raise Conflict(f"node {node['name']} is {live['status']}; only a ready node can join "
                       "a swarm")
    if not node.get("docker"):
        raise Conflict(f"node {node['name']} has no Docker Engine (its agent reports none): "
                       "install Docker on it (Debian: apt install docker.io) and retry")


def add_node(state: State, ref: str, node_ref: str, role: str | None,
             actor: str) -> dict[str, Any]:
    """`swarm init` on the first node, `swarm join` (worker unless role) on later ones."""
    node = find_node(state, node_ref)
    with state.store.transaction(COLLECTION) as tx:
        swarms = tx[COLLECTION]
        s = find(swarms, ref)
        other = swarm_of(swarms, node["id"])
        if other is not None and other["id"] != s["id"]:
            raise Conflict(f"node {node['name']} is already in swarm {other['name']}")
        member = s["members"].get(node["id"])
    if member is not None:
        if role == "manager" and member["role"] != "manager":
            return promote(state, s["id"], node, actor)
        return public(state, s)
    _check_can_join(state, node)
    if not s.get("manager"):
        out = swarm_tasks.run(state, node["id"], swarm_tasks.INIT, {"swarm_id": s["id"]})
        role = "manager"
    else:
        role = role or "worker"
        out = swarm_tasks.run(state, node["id"], swarm_tasks.JOIN,
                              {"swarm_id": s["id"], "role": role})
    with state.store.transaction(COLLECTION) as tx:
        s = find(tx[COLLECTION], s["id"])
        s["members"][node["id"]] = {"role": role, "swarm_node_id": out.get("swarm_node_id"),
                                    "added_at": round(state.now(), 3)}
        s["manager"] = s.get("manager") or node["id"]
    state.audit.record("swarm.node_added", state.now(), swarm_id=s["id"], node_id=node["id"],
                       role=role, actor=actor)
    hooks.emit(state, "swarm.members_changed", swarm_id=s["id"])
    return describe(state, s["id"])


def promote(state: State, swarm_id: str, node: dict[str, Any], actor: str) -> dict[str, Any]:
    s = state.store.read(COLLECTION)[swarm_id]
    member = s["members"][node["id"]]
    swarm_tasks.run(state, s["manager"], swarm_tasks.PROMOTE,
                    {"swarm_node_id": member["swarm_node_id"]})
    with state.store.transaction(COLLECTION) as tx:
        tx[COLLECTION][swarm_id]["members"][node["id"]]["role"] = "manager"
    state.audit.record("swarm.node_promoted", state.now(), swarm_id=swarm_id,
                       node_id=node["id"], actor=actor)
    return describe(state, swarm_id)


def check_manager_leaving(s: dict[str, Any], node_id: str, force: bool) -> None:
    """Refuse to orphan a swarm: its last manager may go only when it is alone (or force)."""
    member = s["members"].get(node_id)
    if member is None or member["role"] != "manager" or force:
        return
    managers = [n for n, m in s["members"].items() if m["role"] == "manager"]
    if managers == [node_id] and len(s["members"]) > 1:
        raise Conflict(f"node {node_id} is the last manager of swarm {s['name']}, which has "
                       "other members: add another manager first (swarm add-node --role "
                       "manager), remove the workers, or use --force")


def successor_of(s: dict[str, Any], leaving: str) -> str | None:
    """The member that runs manager tasks once `leaving` is gone (another manager)."""
    if s.get("manager") != leaving:
        return s.get("manager")
    return next((n for n, m in sorted(s["members"].items())
                 if n != leaving and m["role"] == "manager"), None)


def remove_node(state: State, ref: str, node_ref: str, force: bool,
                actor: str) -> dict[str, Any]:
    """The node leaves; the (remaining) manager removes it from the node list."""
    node = find_node(state, node_ref)
    s = find(state.store.read(COLLECTION), ref)
    member = s["members"].get(node["id"])
    if member is None:
        raise NotFound(f"node {node['name']} is not in swarm {s['name']}")
    check_manager_leaving(s, node["id"], force)
    successor = successor_of(s, node["id"])
    swarm_tasks.run(state, node["id"], swarm_tasks.LEAVE, {"swarm_id": s["id"]})
    if successor and member.get("swarm_node_id"):
        swarm_tasks.run(state, successor, swarm_tasks.NODE_RM,
                        {"swarm_node_id": member["swarm_node_id"]})
    forget_member(state, s["id"], node["id"], successor)
    state.audit.record("swarm.node_removed", state.now(), swarm_id=s["id"], node_id=node["id"],
                       actor=actor)
    return describe(state, s["id"])


def forget_member(state: State, swarm_id: str, node_id: str, successor: str | None) -> None:
    """Drop the membership; every subsystem that follows the members hears of it."""
    with state.store.transaction(COLLECTION) as tx:
        s = tx[COLLECTION].get(swarm_id)
        if s is None:
            return
        member = s["members"].pop(node_id, None) or {}
        s.get("seen", {}).pop(member.get("swarm_node_id") or "", None)
        s["manager"] = successor if s["members"] else None
        if not s["members"]:
            s["tokens"] = {}  # a new first member starts a new swarm with new tokens
    hooks.emit(state, "swarm.members_changed", swarm_id=swarm_id)


def check_role(role: Any) -> str | None:
    if role is None or role in ("manager", "worker"):
        return role
    raise BadRequest("role must be manager or worker")
