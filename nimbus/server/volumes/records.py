"""NFS volumes: create (checked on the serving node first), list, describe, delete.

A volume record (collection `volumes`, keyed by id):
    {id, name, node_id, swarm_id, folder, export_id, root_squash, status, error,
     created_at, ready_at, mounts: {node_id: "ok" | error}, synced_to: [node ids]}
`status`: pending (until the serving node reports the export served), ready, lost (the
serving node was deleted). The data in the folder is never deleted by Nimbus.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nimbus import wire
from nimbus.errors import BadRequest, Conflict, NotFound
from nimbus.nfs import ganesha
from nimbus.nfs import volumes as plan
from nimbus.server import hooks, nodes, refs, tasks
from nimbus.server.volumes import sync

if TYPE_CHECKING:
    from nimbus.server.state import State

COLLECTION = sync.COLLECTION
CHECK_TIMEOUT = 30.0
READY_TIMEOUT = 30.0
INSTALL = "install nfs-ganesha and nfs-ganesha-vfs on it (Debian: apt install nfs-ganesha " \
          "nfs-ganesha-vfs) and restart its agent"


def find(vols: dict[str, Any], ref: str) -> dict[str, Any]:
    return refs.find(vols, ref, "volume")


def public(state: State, v: dict[str, Any]) -> dict[str, Any]:
    all_nodes = state.store.read("nodes")
    server = all_nodes.get(v["node_id"]) or {}
    mounts = {(all_nodes.get(n) or {}).get("name", n): m
              for n, m in sorted((v.get("mounts") or {}).items())}
    return {"id": v["id"], "name": v["name"], "node": server.get("name") or v["node_id"],
            "node_id": v["node_id"],
            "swarm": hooks.query(state, "swarm.name", swarm_id=v["swarm_id"]) or v["swarm_id"],
            "swarm_id": v["swarm_id"], "folder": v["folder"],
            "server_ip": server.get("wireguard_ip") or v.get("server_ip"),
            "export_path": plan.export_path(v["name"]), "status": v["status"],
            "error": v.get("error"), "root_squash": v["root_squash"],
            "clients": sync.client_ips(state, v, all_nodes) if v["status"] != sync.LOST
            else [], "docker_volume": plan.docker_name(v["name"]), "mounts": mounts,
            "created_at": v["created_at"], "ready_at": v.get("ready_at")}


def list_volumes(state: State) -> list[dict[str, Any]]:
    vols = state.store.read(COLLECTION).values()
    return [public(state, v) for v in sorted(vols, key=lambda v: v["name"])]


def describe(state: State, ref: str) -> dict[str, Any]:
    return public(state, find(state.store.read(COLLECTION), ref))


# -- create -----------------------------------------------------------------------------------

def _check_input(name: Any, folder: Any) -> None:
    try:
        plan.check_name(name)
        if folder is not None:
            plan.check_folder(folder)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _serving_node(state: State, ref: str) -> dict[str, Any]:
    try:
        node = state.store.read("nodes")[nodes.resolve(state, ref)]
    except NotFound:
        raise NotFound(f"no node {ref[:64]!r}") from None
    live = nodes.public_node(state, node)
    if live["status"] not in ("ready", "draining"):
        raise Conflict(f"node {node['name']} is {live['status']}; a volume needs its serving "
                       "node online")
    if not nodes.tool_version(node, "ganesha"):
        raise Conflict(f"node {node['name']} cannot serve NFS (its agent finds no "
                       f"NFS-Ganesha): {INSTALL}")
    return node


def _free_export_id(vols: dict[str, Any], node_id: str) -> int:
    taken = {v["export_id"] for v in vols.values() if v["node_id"] == node_id}
    return next(i for i in range(1, ganesha.MAX_EXPORT_ID + 1) if i not in taken)


def _check_unique(vols: dict[str, Any], name: str, node_id: str, folder: str | None) -> None:
    """Conflict for a taken name, or a folder in, around or equal to another's on the node
    (folder None: not known yet, the node resolves the default)."""
    for v in vols.values():
        if v["name"] == name:
            raise Conflict(f"a volume named {name} already exists")
        if folder and v["node_id"] == node_id and v["status"] != sync.LOST and plan.overlaps(
                v["folder"], folder):
            raise Conflict(f"{folder} overlaps the folder of volume {v['name']} "
                           f"({v['folder']}) on the same node")


def create(state: State, name: str, node_ref: str, swarm_ref: str, folder: str | None,
           root_squash: bool, actor: str) -> dict[str, Any]:
    """Check everything (input, node, swarm, the folder on the node), then record the
    volume and sync its nodes; waits a while for the export to be served."""
    _check_input(name, folder)
    node = _serving_node(state, node_ref)
    swarm_id = hooks.query(state, "swarm.resolve", ref=swarm_ref)
    _check_unique(state.store.read(COLLECTION), name, node["id"], folder)
    checked = tasks.run(state, node["id"], sync.CHECK, {"name": name, "folder": folder},
                        CHECK_TIMEOUT)
    resolved = str(checked.get("folder") or "")
    _check_input(name, resolved)
    with state.store.transaction(COLLECTION) as tx:
        vols = tx[COLLECTION]
        _check_unique(vols, name, node["id"], resolved)
        v = {"id": wire.new_id("vol"), "name": name, "node_id": node["id"],
             "swarm_id": swarm_id, "folder": resolved, "server_ip": node["wireguard_ip"],
             "export_id": _free_export_id(vols, node["id"]), "root_squash": bool(root_squash),
             "status": sync.PENDING, "error": None, "created_at": round(state.now(), 3),
             "ready_at": None, "mounts": {}, "synced_to": []}
        vols[v["id"]] = v
    state.audit.record("volume.created", state.now(), volume=name, node_id=node["id"],
                       swarm_id=swarm_id, root_squash=bool(root_squash), actor=actor)
    sync.resync(state, [v["id"]])
    return _wait_ready(state, v["id"], READY_TIMEOUT)


def _wait_ready(state: State, vid: str, timeout: float) -> dict[str, Any]:
    """The volume once ready, failed, or after timeout (then still pending)."""
    deadline = time.monotonic() + timeout
    while True:
        v = state.store.read(COLLECTION).get(vid)
        if v is None:
            raise NotFound("the volume was deleted meanwhile")
        if v["status"] != sync.PENDING or v.get("error") or time.monotonic() > deadline:
            return public(state, v)
        time.sleep(0.1)


# -- delete -----------------------------------------------------------------------------------

def users(state: State, name: str) -> list[str]:
    """Services that map the volume (asked of whoever runs services)."""
    try:
        return sorted(hooks.query(state, "volume.users", volume=name))
    except LookupError:  # no subsystem runs services
        return []


def delete(state: State, ref: str, force: bool, actor: str) -> dict[str, Any]:
    """Remove the export and every member's Docker volume; the data stays in the folder."""
    v = find(state.store.read(COLLECTION), ref)
    used = users(state, v["name"])
    if used:  # even with --force: a running service would lose its storage
        raise Conflict(f"volume {v['name']} is used by service(s) {', '.join(used)}: remove "
                       "them first (service delete NAME)")
    server = state.store.read("nodes").get(v["node_id"])
    if v["status"] != sync.LOST and server is not None and not force:
        status = nodes.public_node(state, server)["status"]
        if status not in ("ready", "draining"):
            raise Conflict(f"node {server['name']} is {status}: its export cannot be removed "
                           "now; start its agent, or use --force (it goes when the node is "
                           "back)")
    holders = sync.wanted_nodes(state, v) | set(v.get("synced_to") or ())
    with state.store.transaction(COLLECTION, "tasks") as tx:
        tx[COLLECTION].pop(v["id"], None)
        targets = sync.queue_sync(state, tx, holders)
    state.waiters.notify(targets)
    state.audit.record("volume.deleted", state.now(), volume=v["name"], actor=actor,
                       force=bool(force))
    node_name = (server or {}).get("name") or v["node_id"]
    return {"id": v["id"], "name": v["name"], "deleted": True, "node": node_name,
            "folder": v["folder"], "kept": f"the data stays in {v['folder']} on {node_name}"}
