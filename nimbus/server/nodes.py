"""Nodes: creation with a join token, listing with live status, drain, IP change, deletion."""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from typing import Any

from nimbus import wire
from nimbus.errors import Conflict, NotFound
from nimbus.server import ipam, mesh, tasks
from nimbus.server.runtime import Runtime
from nimbus.server.state import State

log = logging.getLogger("nimbus.nodes")
OFFLINE_AFTER_INTERVALS = 3
RUNTIME_FIELDS = ("last_seen", "cpu", "memory", "disk")


def runtime(state: State) -> Runtime:
    with state.lock:
        if "runtime" not in state.extras:
            state.extras["runtime"] = Runtime(state.store)
        return state.extras["runtime"]


def status_of(state: State, node: dict[str, Any], live: dict[str, Any]) -> str:
    if node["state"] in ("pending", "draining"):
        return node["state"]
    last_seen = live.get("last_seen") or node.get("joined_at") or 0
    limit = OFFLINE_AFTER_INTERVALS * state.config.heartbeat_interval_sec
    return "ready" if state.now() - last_seen <= limit else "offline"


def public_node(state: State, node: dict[str, Any]) -> dict[str, Any]:
    live = runtime(state).get(node["id"])
    out = {k: node.get(k) for k in (
        "id", "name", "ip_address", "wireguard_ip", "wireguard_public_key", "hostname",
        "arch", "agent_version", "created_at", "joined_at", "cert_expires_at")}
    out["status"] = status_of(state, node, live)
    out.update({k: live.get(k) for k in RUNTIME_FIELDS})
    return out


def list_nodes(state: State) -> list[dict[str, Any]]:
    nodes = state.store.read("nodes").values()
    return [public_node(state, n) for n in sorted(nodes, key=lambda n: n["wireguard_ip"])]


def listing_json(state: State) -> bytes:
    """list_nodes() as JSON, cached until a node, its heartbeat data or a status changes.

    Serialising 100 nodes costs ~0.8 ms of GIL time; operators and dashboards poll the
    listing far more often than it changes. The cache is exact: it is keyed on the nodes
    snapshot and the runtime version, and expires when the first ready node would turn
    offline.
    """
    import json

    nodes, rt, now = state.store.read("nodes"), runtime(state), state.now()
    version = rt.version  # read before building: the body is at least this new
    cached = state.extras.get("node_listing")
    if cached and cached[0] is nodes and cached[1] == version and now < cached[2]:
        return cached[3]
    body = json.dumps(list_nodes(state), separators=(",", ":")).encode()
    limit = OFFLINE_AFTER_INTERVALS * state.config.heartbeat_interval_sec
    expires = now + 60.0
    for node in nodes.values():
        if node["state"] not in ("pending", "draining"):
            seen = rt.get(node["id"]).get("last_seen") or node.get("joined_at") or 0
            if now - seen <= limit:
                expires = min(expires, seen + limit)
    state.extras["node_listing"] = (nodes, version, expires, body)
    return body


def get_node(state: State, node_id: str) -> dict[str, Any]:
    node = state.store.read("nodes").get(wire.check_id("node", node_id))
    if node is None:
        raise NotFound("no such node")
    return node


def describe(state: State, node_id: str) -> dict[str, Any]:
    node = get_node(state, node_id)
    return {**public_node(state, node), "tasks": tasks.for_node(state, node_id)}


def create(state: State, ip_address: str, name: str | None, actor: str) -> dict[str, Any]:
    """A pending node, its overlay IP and WireGuard keys, and a one-time join token."""
    from nimbus.security import wgkeys

    if state.config.wireguard and not state.config.public_address:
        # Without it the token would point nodes at 127.0.0.1 for the tunnel.
        raise Conflict("set public_address in the server config (the IP nodes use to reach "
                       "this control plane's WireGuard port) before adding nodes")
    secret = secrets.token_urlsafe(32)
    wg_private, wg_public = wgkeys.generate_keypair()
    now = state.now()
    expires_at = int(now) + state.config.join_token_ttl_sec
    with state.store.transaction("nodes") as tx:
        nodes = tx["nodes"]
        node_id = wire.new_id("node")
        name = name or f"node-{node_id[5:11]}"
        if any(n["name"] == name for n in nodes.values()):
            raise Conflict(f"a node named {name} already exists")
        wg_ip = ipam.allocate(state.config.wireguard_subnet,
                              [n["wireguard_ip"] for n in nodes.values()])
        node = {"id": node_id, "name": name, "ip_address": ip_address, "reported_ip": None,
                "wireguard_ip": wg_ip, "wireguard_public_key": wg_public,
                "wireguard_port": 51820, "state": "pending", "created_at": round(now, 3),
                "joined_at": None, "hostname": None, "arch": None, "agent_version": None,
                "cert_serials": [], "cert_expires_at": None,
                # SECURITY: only the hash of the join secret is stored.
                "join": {"secret_sha256": hashlib.sha256(secret.encode()).hexdigest(),
                         "expires_at": expires_at, "used": False}}
        nodes[node_id] = node
    cfg = state.config
    token = wire.encode_join_token({
        "node_id": node_id, "secret": secret, "expires_at": expires_at, "wg_ip": wg_ip,
        "wg_private_key": wg_private, "wg_public_key": mesh.control_plane_key(state)[1],
        "wg_endpoint": mesh.control_plane_peer(state)["endpoint"],
        "api_url": cfg.overlay_api_url if cfg.wireguard else cfg.direct_api_url,
        "subnet": cfg.wireguard_subnet, "ca_pem": state.keys.ca_pem})
    state.audit.record("node.created", now, node_id=node_id, actor=actor, wireguard_ip=wg_ip)
    mesh.mesh_changed(state)  # the control plane accepts the pending node's tunnel for the join
    return {"node": public_node(state, node), "join_token": token}


def drain(state: State, node_id: str, actor: str) -> dict[str, Any]:
    with state.store.transaction("nodes") as tx:
        node = tx["nodes"].get(wire.check_id("node", node_id))
        if node is None:
            raise NotFound("no such node")
        if node["state"] == "pending":
            raise Conflict("a node that has not joined cannot be drained")
        node["state"] = "draining"
    state.audit.record("node.drained", state.now(), node_id=node_id, actor=actor)
    return public_node(state, node)


def _redistribute(state: State, tx: dict[str, Any], except_id: str | None = None) -> list[str]:
    targets = [n["id"] for n in mesh.joined_nodes(tx["nodes"]) if n["id"] != except_id]
    tasks.enqueue(state, tx["tasks"], targets, mesh.UPDATE_PEERS)
    return targets


def _after_mesh_change(state: State, targets: list[str]) -> None:
    tasks.waiters(state).notify(targets)
    mesh.mesh_changed(state)


def set_ip(state: State, node_id: str, ip_address: str, actor: str,
           reported: bool = False) -> dict[str, Any]:
    """Change a node's public endpoint and send every node its new peer list."""
    with state.store.transaction("nodes", "tasks") as tx:
        node = tx["nodes"].get(wire.check_id("node", node_id))
        if node is None:
            raise NotFound("no such node")
        if reported:
            node["reported_ip"] = ip_address
        changed = node["ip_address"] != ip_address
        node["ip_address"] = ip_address
        targets = _redistribute(state, tx, node_id) if changed and node["state"] != "pending" \
            else []
    if changed:
        state.audit.record("node.ip_changed", state.now(), node_id=node_id, actor=actor,
                           ip_address=ip_address)
        _after_mesh_change(state, targets)
    return public_node(state, node)


def delete(state: State, node_id: str, actor: str) -> dict[str, Any]:
    """Revoke every certificate of the node at once and cut it out of the mesh."""
    now = state.now()
    with state.store.transaction("nodes", "revoked", "tasks") as tx:
        node = tx["nodes"].pop(wire.check_id("node", node_id), None)
        if node is None:
            raise NotFound("no such node")
        revoked = tx["revoked"]
        for serial in node["cert_serials"]:
            revoked[serial] = {"node_id": node_id, "revoked_at": round(now, 3),
                               "not_after": node.get("cert_expires_at") or now + 400 * 86400}
        for serial in [s for s, r in revoked.items() if r["not_after"] < now - 86400]:
            del revoked[serial]  # expired certificates fail the TLS handshake anyway
        tasks.drop_node(tx["tasks"], node_id)
        targets = _redistribute(state, tx)
    runtime(state).forget(node_id)
    state.audit.record("node.deleted", now, node_id=node_id, actor=actor,
                       revoked_serials=node["cert_serials"])
    for serial in node["cert_serials"]:
        state.audit.record("cert.revoked", now, node_id=node_id, serial=serial)
    _after_mesh_change(state, [*targets, node_id])
    return {"id": node_id, "deleted": True, "revoked_certificates": len(node["cert_serials"])}


def start_background(state: State) -> Any:
    """Persist heartbeat data in batches (every 5 s) until the server stops."""
    stop = threading.Event()
    rt = runtime(state)
    thread = threading.Thread(target=rt.run_flusher, args=(5.0, stop), name="runtime-flush",
                              daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        tasks.waiters(state).notify([])
        thread.join(timeout=10)

    return halt
