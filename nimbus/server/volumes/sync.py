"""The volume task types, and keeping every node's share in line with the records.

`volume.sync` is coalesced and rendered at delivery, like WireGuard peers: whatever
changed (a volume, a swarm's members, a node deleted), the affected nodes get one task
whose payload is their whole desired state — the exports they serve with the overlay
IPs of the swarm's members as clients, and the Docker volumes they should hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from nimbus.errors import Conflict, NotFound
from nimbus.nfs import volumes as plan
from nimbus.server import hooks, tasks

if TYPE_CHECKING:
    from nimbus.server.state import State

COLLECTION = "volumes"
CHECK, SYNC = "volume.check", "volume.sync"
PENDING, READY, LOST = "pending", "ready", "lost"


def members(state: State, swarm_id: str) -> list[str]:
    """The swarm's member node ids (none once the swarm is gone)."""
    if not hooks.query(state, "swarm.exists", swarm_id=swarm_id):
        return []
    return list(hooks.query(state, "swarm.members", swarm_id=swarm_id))


def client_ips(state: State, v: dict[str, Any], nodes: dict[str, Any]) -> list[str]:
    """Overlay IPs of the joined members of the volume's swarm: who may mount it."""
    ips = {nodes[n]["wireguard_ip"] for n in members(state, v["swarm_id"])
           if n in nodes and nodes[n].get("state") != "pending"}
    return sorted(ips)


def _server_ip(nodes: dict[str, Any], v: dict[str, Any]) -> str:
    return str((nodes.get(v["node_id"]) or {}).get("wireguard_ip") or "")


# -- render (delivery time) -----------------------------------------------------------------

def render_sync(state: State, node_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    vols = [v for v in state.store.read(COLLECTION).values() if v["status"] != LOST]
    nodes = state.store.read("nodes")
    exports = [{"name": v["name"], "export_id": v["export_id"], "folder": v["folder"],
                "root_squash": v["root_squash"], "clients": client_ips(state, v, nodes)}
               for v in sorted(vols, key=lambda v: v["export_id"]) if v["node_id"] == node_id]
    mounts = [{"name": v["name"], "server_ip": _server_ip(nodes, v),
               "export_path": plan.export_path(v["name"])}
              for v in sorted(vols, key=lambda v: v["name"])
              if node_id in members(state, v["swarm_id"]) and _server_ip(nodes, v)]
    return {"serve": {"bind_ip": (nodes.get(node_id) or {}).get("wireguard_ip", ""),
                      "exports": exports}, "mounts": mounts}


# -- results --------------------------------------------------------------------------------

def on_sync_result(state: State, task: dict[str, Any], status: str, output: str) -> str:
    """Serving node: pending → ready (or the error); member: its Docker volume's state."""
    node_id = task["node_id"]
    try:
        data = json.loads(output) if status == "succeeded" else {}
    except ValueError:
        data = {}
    data = data if isinstance(data, dict) else {}
    served, errors = set(data.get("served") or ()), dict(data.get("errors") or {})
    mounts = dict(data.get("mounts") or {})
    with state.store.transaction(COLLECTION) as tx:
        for v in tx[COLLECTION].values():
            if v["node_id"] == node_id and v["status"] != LOST:
                _serving_result(state, v, status, output, served, errors)
            if v["name"] in mounts:
                if mounts[v["name"]] == "removed":
                    v.setdefault("mounts", {}).pop(node_id, None)
                else:
                    v.setdefault("mounts", {})[node_id] = str(mounts[v["name"]])[:300]
    return output


def _serving_result(state: State, v: dict[str, Any], status: str, output: str,
                    served: set[str], errors: dict[str, Any]) -> None:
    if status != "succeeded":
        v["error"] = (output.strip() or "the sync task failed")[:300]
    elif v["name"] in served:
        if v["status"] != READY:
            v["status"], v["ready_at"] = READY, round(state.now(), 3)
        v["error"] = None
    elif v["name"] in errors:
        v["status"], v["error"] = PENDING, str(errors[v["name"]])[:300]


# -- queueing -------------------------------------------------------------------------------

def wanted_nodes(state: State, v: dict[str, Any]) -> set[str]:
    """Who holds part of the volume now: its server (unless lost) and the swarm's members."""
    out = set(members(state, v["swarm_id"]))
    if v["status"] != LOST:
        out.add(v["node_id"])
    return out


def resync(state: State, match: Iterable[str] | None = None, also: Iterable[str] = ()) -> None:
    """Queue `volume.sync` for every node that holds or held part of the matched volumes
    (all when match is None), plus `also`; remembers who holds what (`synced_to`) so a
    node that left still hears that it must let go."""
    names = None if match is None else set(match)
    current = {v["id"]: wanted_nodes(state, v)
               for v in state.store.read(COLLECTION).values()
               if names is None or v["name"] in names or v["id"] in names}
    targets = set(also)
    with state.store.transaction(COLLECTION, "tasks") as tx:
        for vid, now in current.items():
            v = tx[COLLECTION].get(vid)
            if v is None:
                continue
            targets |= now | set(v.get("synced_to") or ())
            v["synced_to"] = sorted(now)
        queue_sync(state, tx, targets)
    state.waiters.notify(sorted(targets))


def queue_sync(state: State, tx: dict[str, Any], targets: Iterable[str]) -> list[str]:
    """Inside a transaction on tasks: one coalesced sync per existing joined target."""
    nodes = state.store.read("nodes")
    joined = sorted(t for t in set(targets) if t in nodes and nodes[t].get("state") != "pending")
    tasks.enqueue(state, tx["tasks"], joined, SYNC)
    return joined


def docker_volume_for(state: State, volume: str, swarm_id: str) -> str:
    """The Docker volume a stack on swarm_id maps for `volume` (query `volume.docker_name`);
    NotFound or Conflict (one line) when the volume is not there for that swarm."""
    v = next((v for v in state.store.read(COLLECTION).values() if v["name"] == volume), None)
    if v is None:
        raise NotFound(f"no volume {volume[:64]!r}")
    if v["swarm_id"] != swarm_id:
        theirs = hooks.query(state, "swarm.name", swarm_id=v["swarm_id"]) or v["swarm_id"]
        raise Conflict(f"volume {volume} is attached to swarm {theirs}, not to this one")
    if v["status"] == LOST:
        raise Conflict(f"volume {volume} is lost (its serving node was deleted)")
    return plan.docker_name(volume)


def attached_to(state: State, swarm_id: str) -> list[str]:
    """Names of the volumes attached to a swarm, lost ones included (query
    `volume.attached_to`): deleting the swarm first would leave them without clients."""
    return sorted(v["name"] for v in state.store.read(COLLECTION).values()
                  if v["swarm_id"] == swarm_id)


# -- events and node hooks --------------------------------------------------------------------

def members_changed(state: State, swarm_id: str, **_: Any) -> None:
    """A swarm gained or lost a member: its volumes' client lists and Docker volumes follow."""
    ids = [v["id"] for v in state.store.read(COLLECTION).values() if v["swarm_id"] == swarm_id]
    if ids:
        resync(state, ids)


def served_by(state: State, node_id: str) -> list[dict[str, Any]]:
    return sorted((v for v in state.store.read(COLLECTION).values()
                   if v["node_id"] == node_id and v["status"] != LOST),
                  key=lambda v: v["name"])


def check_node_delete(state: State, node_id: str, force: bool) -> None:
    served = served_by(state, node_id)
    if served and not force:
        names = ", ".join(v["name"] for v in served)
        raise Conflict(f"this node serves the volume(s) {names}: delete them first (volume "
                       "delete), or use --force (they become lost; the data stays on its disk)")


def node_deleted(state: State, node_id: str) -> None:
    """Its volumes are lost (members drop their Docker volumes); it is nobody's client."""
    with state.store.transaction(COLLECTION) as tx:
        lost = []
        for v in tx[COLLECTION].values():
            v.get("mounts", {}).pop(node_id, None)
            v["synced_to"] = [n for n in v.get("synced_to") or () if n != node_id]
            if v["node_id"] == node_id and v["status"] != LOST:
                v["status"], v["error"] = LOST, "the serving node was deleted"
                lost.append(v["name"])
    if lost:
        state.audit.record("volume.lost", state.now(), node_id=node_id, volumes=lost)
    resync(state)


TASK_TYPES = (tasks.TaskType(CHECK),
              tasks.TaskType(SYNC, render_sync, coalesce=True, on_result=on_sync_result))
