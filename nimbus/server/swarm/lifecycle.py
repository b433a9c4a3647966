"""What spans a swarm's groups and its stacks: deleting a swarm, and the node-delete hooks."""

from __future__ import annotations

from typing import Any

from nimbus.errors import Conflict
from nimbus.server import hooks
from nimbus.server.state import State
from nimbus.server.swarm import groups, services
from nimbus.server.swarm import tasks as swarm_tasks


def delete(state: State, ref: str, actor: str) -> dict[str, Any]:
    """Every member leaves (workers first); the record and its stacks are removed."""
    s = groups.find(state.store.read(groups.COLLECTION), ref)
    attached = hooks.query(state, "volume.attached_to", swarm_id=s["id"])
    if attached:
        # Its volumes would keep a dangling swarm and an empty client list; an operator
        # deletes them (and the services that map them) on purpose, first.
        raise Conflict(f"swarm {s['name']} still has volume(s) {', '.join(attached[:5])}: "
                       "delete them first (nimbus volume delete NAME)")
    failed: list[str] = []
    with swarm_tasks.waiting_slot(state):
        for role in ("worker", "manager"):  # a manager leaving first would strand workers
            members = [n for n, m in s["members"].items() if m["role"] == role]
            ids = swarm_tasks.queue(state, members, swarm_tasks.LEAVE, {"swarm_id": s["id"]})
            failed += swarm_tasks.wait_all(state, ids)
    if failed:
        raise Conflict(f"swarm {s['name']}: leaving failed on {len(failed)} node(s): "
                       f"{failed[0]}")
    with state.store.transaction(groups.COLLECTION, services.COLLECTION) as tx:
        tx[groups.COLLECTION].pop(s["id"], None)
        services.forget_swarm(tx[services.COLLECTION], s["id"])
    state.audit.record("swarm.deleted", state.now(), swarm_id=s["id"], actor=actor)
    if s["members"]:
        hooks.emit(state, "swarm.members_changed", swarm_id=s["id"])
    return {"id": s["id"], "name": s["name"], "deleted": True}


# -- node deletion (registered hooks, called by nodes.delete through server/hooks.py) -------

def check_node_delete(state: State, node_id: str, force: bool) -> None:
    """Conflict when deleting this node would orphan the workers of its swarm."""
    s = groups.swarm_of(state.store.read(groups.COLLECTION), node_id)
    if s is not None:
        groups.check_manager_leaving(s, node_id, force)


def node_deleted(state: State, node_id: str) -> None:
    """Queue `docker node rm --force` on a remaining manager; drop the membership."""
    s = groups.swarm_of(state.store.read(groups.COLLECTION), node_id)
    if s is None:
        return
    member = s["members"][node_id]
    successor = groups.successor_of(s, node_id)
    if successor and member.get("swarm_node_id"):
        swarm_tasks.queue(state, [successor], swarm_tasks.NODE_RM,
                          {"swarm_node_id": member["swarm_node_id"]})
    groups.forget_member(state, s["id"], node_id, successor)
    state.audit.record("swarm.node_removed", state.now(), swarm_id=s["id"], node_id=node_id,
                       actor="node.delete")
