"""Nodes: creation with a join token, listing with live status, facts, drain, IP, deletion."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from nimbus import wire
from nimbus.errors import BadRequest, Conflict, NotFound
from nimbus.server import audited, hooks, ipam, mesh, tasks
from nimbus.server.state import State
from nimbus.store import HOT_READ_MAX_AGE_SEC

log = logging.getLogger("nimbus.nodes")
OFFLINE_AFTER_INTERVALS = 3
RUNTIME_FIELDS = ("last_seen", "cpu", "memory", "disk")


def status_of(state: State, node: dict[str, Any], live: dict[str, Any]) -> str:
    if node["state"] in ("pending", "draining"):
        return node["state"]
    limit = OFFLINE_AFTER_INTERVALS * state.config.heartbeat_interval_sec
    return "ready" if _silent_for(state, node, live) <= limit else "offline"


def seen(state: State, node_id: str, live: dict[str, Any]) -> None:
    """A node was heard from now: its live data, and the monotonic stamp offline
    detection measures from."""
    state.stamps.mark(("seen", node_id))
    state.runtime.update(node_id, live)


def _silent_for(state: State, node: dict[str, Any], live: dict[str, Any]) -> float:
    last_seen = live.get("last_seen") or node.get("joined_at") or 0
    return state.stamps.age(("seen", node["id"]), last_seen)


def public_node(state: State, node: dict[str, Any]) -> dict[str, Any]:
    live = state.runtime.get(node["id"])
    out = {k: node.get(k) for k in (
        "id", "name", "ip_address", "wireguard_ip", "wireguard_public_key", "hostname",
        "arch", "agent_version", "created_at", "joined_at", "cert_expires_at", "docker")}
    out["tools"] = node.get("tools") or {}
    out["status"] = status_of(state, node, live)
    out.update({k: live.get(k) for k in RUNTIME_FIELDS})
    return out


def list_nodes(state: State) -> list[dict[str, Any]]:
    nodes = state.store.read("nodes").values()
    return [public_node(state, n) for n in sorted(nodes, key=lambda n: n["wireguard_ip"])]


def listing_json(state: State) -> bytes:
    """The response body of GET /v1/nodes, `{"data": list_nodes()}` as JSON, cached until a
    node, its heartbeat data or a status changes.

    Operators and dashboards poll the listing far more often than it changes (the cost
    is in docs/performance.md). The cache is exact: it is keyed on the nodes snapshot and
    the runtime version, and expires when the first ready node would turn offline. It holds
    the whole envelope, so a hit copies nothing (two 50 KB copies with 100 nodes).
    """
    nodes, rt = state.store.read("nodes", HOT_READ_MAX_AGE_SEC), state.runtime
    now = state.stamps.monotonic()
    version = rt.version  # read before building: the body is at least this new
    cached = state.node_listing
    if cached and cached[0] is nodes and cached[1] == version and now < cached[2]:
        return cached[3]
    body = json.dumps({"data": list_nodes(state)}, separators=(",", ":")).encode()
    limit = OFFLINE_AFTER_INTERVALS * state.config.heartbeat_interval_sec
    expires = now + 60.0
    for node in nodes.values():
        if node["state"] not in ("pending", "draining"):
            silent = _silent_for(state, node, rt.get(node["id"]))
            if silent <= limit:
                expires = min(expires, now + limit - silent)
    state.node_listing = (nodes, version, expires, body)
    return body


def resolve(state: State, ref: str) -> str:
    """The id of the node with this id or name; NotFound otherwise."""
    nodes = state.store.read("nodes")
    if ref in nodes:
        return ref
    for node in nodes.values():
        if node["name"] == ref:
            return node["id"]
    if wire.ID_RE["node"].fullmatch(ref) or wire.NAME_RE.fullmatch(ref):
        raise NotFound("no such node")
    raise BadRequest("invalid node id or name")


def tool_version(node: dict[str, Any], tool: str) -> str | None:
    """The version of `tool` the node last reported (heartbeat `tools`), None without it."""
    return (node.get("tools") or {}).get(tool)


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
    check_endpoint(state, ip_address)
    if name and wire.ID_RE["node"].fullmatch(name):
        # `node describe NAME` looks ids up first: such a name would stand for another node.
        raise BadRequest("a node name must not look like a node id (node-<16 hex digits>)")
    secret = secrets.token_urlsafe(32)
    wg_private, wg_public = wgkeys.generate_keypair()
    now = state.now()
    expires_at = int(now) + state.config.join_token_ttl_sec
    with audited.transaction(state, "nodes") as (tx, note):
        nodes = tx["nodes"]
        node_id = wire.new_id("node")
        name = name or f"node-{node_id[5:11]}"
        if any(n["name"] == name for n in nodes.values()):
            raise Conflict(f"a node named {name} already exists")
        wg_ip = ipam.allocate(state.config.wireguard_subnet,
                              [n["wireguard_ip"] for n in nodes.values()])
        node = {"id": node_id, "name": name, "ip_address": ip_address, "reported_ip": None,
                "wireguard_ip": wg_ip, "wireguard_public_key": wg_public,
                "wireguard_port": wire.WIREGUARD_PORT, "state": "pending",
                "created_at": round(now, 3),
                "joined_at": None, "hostname": None, "arch": None, "agent_version": None,
                "cert_serials": [], "cert_expires_at": None,
                # SECURITY: only the hash of the join secret is stored.
                "join": {"secret_sha256": hashlib.sha256(secret.encode()).hexdigest(),
                         "expires_at": expires_at, "used": False}}
        nodes[node_id] = node
        note("node.created", node_id=node_id, actor=actor, wireguard_ip=wg_ip)
    token = _join_token(state, node, secret, wg_private)
    mesh.reconcile(state)  # the control plane accepts the pending node's tunnel for the join
    return {"node": public_node(state, node), "join_token": token}


def _join_token(state: State, node: dict[str, Any], secret: str, wg_private: str) -> str:
    """The join token for a pending node (design.md §3.4); only the secret's hash is kept."""
    cfg = state.config
    return wire.encode_join_token({
        "node_id": node["id"], "secret": secret, "expires_at": node["join"]["expires_at"],
        "wg_ip": node["wireguard_ip"], "wg_private_key": wg_private,
        "wg_public_key": state.keys.wireguard_keypair()[1],
        "wg_endpoint": mesh.control_plane_peer(state)["endpoint"],
        "api_url": cfg.overlay_api_url if cfg.wireguard else cfg.direct_api_url,
        "subnet": cfg.wireguard_subnet, "ca_pem": state.keys.ca_pem})


def new_join_token(state: State, node_id: str, actor: str) -> dict[str, Any]:
    """A fresh token (secret, join key, expiry) for a pending node; the old one stops working."""
    from nimbus.security import wgkeys

    secret = secrets.token_urlsafe(32)
    wg_private, wg_public = wgkeys.generate_keypair()
    now = state.now()
    with audited.transaction(state, "nodes") as (tx, note):
        node = tx["nodes"].get(wire.check_id("node", node_id))
        if node is None:
            raise NotFound("no such node")
        if node["state"] != "pending":
            raise Conflict(f"node {node['name']} has already joined; a join token is only for "
                           "a pending node (to join the machine again, delete the node and "
                           "add it anew)")
        node["wireguard_public_key"] = wg_public  # the old token's tunnel key stops working
        # SECURITY: only the hash of the new secret is stored; the old hash is replaced.
        node["join"] = {"secret_sha256": hashlib.sha256(secret.encode()).hexdigest(),
                        "expires_at": int(now) + state.config.join_token_ttl_sec,
                        "used": False}
        note("node.token", node_id=node_id, actor=actor)
    token = _join_token(state, node, secret, wg_private)
    mesh.reconcile(state)  # the control plane peers with the new join key
    return {"node": public_node(state, node), "join_token": token}


def undrain(state: State, node_id: str, actor: str) -> dict[str, Any]:
    """A draining node takes work again."""
    with audited.transaction(state, "nodes") as (tx, note):
        node = tx["nodes"].get(wire.check_id("node", node_id))
        if node is None:
            raise NotFound("no such node")
        if node["state"] != "draining":
            raise Conflict(f"node {node['name']} is not draining")
        node["state"] = "active"
        note("node.undrained", node_id=node_id, actor=actor)
    return public_node(state, node)


def drain(state: State, node_id: str, actor: str) -> dict[str, Any]:
    with audited.transaction(state, "nodes") as (tx, note):
        node = tx["nodes"].get(wire.check_id("node", node_id))
        if node is None:
            raise NotFound("no such node")
        if node["state"] == "pending":
            raise Conflict("a node that has not joined cannot be drained")
        node["state"] = "draining"
        note("node.drained", node_id=node_id, actor=actor)
    return public_node(state, node)


def _move(state: State, tx: dict[str, Any], node: dict[str, Any], ip_address: str,
          reported: bool) -> Callable[[], None] | None:
    """Set the node's public IP inside the caller's transaction on "nodes" and "tasks".

    Returns the step to run after commit when the endpoint moved (else None).
    """
    if reported:
        node["reported_ip"] = ip_address
    if node["ip_address"] == ip_address:
        return None
    node["ip_address"] = ip_address
    if node["state"] == "pending":  # only the control plane has it as a peer so far
        return lambda: mesh.reconcile(state)
    return mesh.redistribute(state, tx, except_id=node["id"])


def set_ip(state: State, node_id: str, ip_address: str, actor: str) -> dict[str, Any]:
    """Change a node's public endpoint and send every node its new peer list."""
    check_endpoint(state, ip_address)
    with state.store.transaction("nodes", "tasks") as tx:
        node = tx["nodes"].get(wire.check_id("node", node_id))
        if node is None:
            raise NotFound("no such node")
        announce = _move(state, tx, node, ip_address, reported=False)
    if announce is not None:
        state.audit.record("node.ip_changed", state.now(), node_id=node_id, actor=actor,
                           ip_address=ip_address)
        announce()
    return public_node(state, node)


def heard(state: State, node_id: str, live: dict[str, Any], facts: dict[str, Any],
          ip: str | None) -> None:
    """A heartbeat: live data into memory, changed facts (and a new IP) into the store.

    The node used its certificate, so the copy kept for a lost join answer is no longer
    needed: `runtime` refuses join retries from now on and drops it in its next batched
    flush (never one store write per heartbeat)."""
    node = state.store.read("nodes").get(node_id) or {}
    seen(state, node_id, live)
    if (node.get("join") or {}).get("cert_pem"):
        state.runtime.note_answered(node_id)
    record_facts(state, node_id, facts, ip)


def record_facts(state: State, node_id: str, facts: dict[str, Any], ip: str | None) -> None:
    """What a node reports about itself (hostname, arch, agent version, its public IP).

    Stored only when something differs from the store, so a steady heartbeat never
    writes; a new IP moves the node's endpoint for the whole mesh. SECURITY: a node's
    reports are not trusted to be rare: an unusable IP is dropped, and changes are
    rate-limited per node (`_accepted`), so a node flipping its IP or hostname on every
    heartbeat costs one store write and one mesh-wide peer update per interval, not one
    per heartbeat.
    """
    node = state.store.read("nodes").get(node_id) or {}
    if ip and ip != node.get("reported_ip") and _refuse_endpoint(state, node_id, ip):
        ip = None
    # An empty fact equals a missing one: a node recorded before `tools` existed (or just
    # joined) reports {} on every heartbeat, and each such first heartbeat used to rewrite
    # the whole nodes file (0.5 s with 10,000 nodes; 200 agents stalled every heartbeat).
    changed = {k: v for k, v in facts.items() if node.get(k) != v and (v or node.get(k))}
    if ip and ip != node.get("reported_ip"):
        changed["ip_address"] = ip
    changed = _accepted(state, node_id, changed)
    if not changed:
        return
    ip = changed.pop("ip_address", None)
    announce = None
    with state.store.transaction("nodes", "tasks") as tx:
        node = tx["nodes"].get(node_id)
        if node is None:
            return
        node.update(changed)
        if ip:
            announce = _move(state, tx, node, ip, reported=True)
    if announce is not None:
        state.audit.record("node.ip_changed", state.now(), node_id=node_id, actor=node_id,
                           ip_address=ip)
        announce()


# A node's endpoint (reported IP, host name) may change once, then at most once per
# ENDPOINT_CHANGE_SEC; its other facts (arch, versions, Docker, tools) once per
# FACT_CHANGE_SEC. A change reported sooner is ignored (the next report after the
# interval still brings it), counted, and audited in aggregate per node.
ENDPOINT_FACTS = ("ip_address", "hostname")
ENDPOINT_CHANGE_SEC = 300.0
FACT_CHANGE_SEC = 60.0


def _accepted(state: State, node_id: str, changed: dict[str, Any]) -> dict[str, Any]:
    """The part of `changed` that may be written now."""
    out: dict[str, Any] = {}
    for kind, interval in (("endpoint", ENDPOINT_CHANGE_SEC), ("facts", FACT_CHANGE_SEC)):
        part = {k: v for k, v in changed.items() if (k in ENDPOINT_FACTS) == (kind == "endpoint")}
        if not part:
            continue
        if state.stamps.claim(("changed", kind, node_id), interval):
            out.update(part)
            continue
        state.metrics.inc("node_changes_ignored")
        state.audit.record("node.change.refused", state.now(), source=node_id, node_id=node_id,
                           fields=",".join(sorted(part)),
                           reason=f"{kind} changed less than {interval:g} s ago",
                           **{k: part[k] for k in ENDPOINT_FACTS if k in part})
    return out


def check_endpoint(state: State, ip: str) -> str:
    """ip, if it can be a node's WireGuard endpoint (wire.endpoint_ip, and outside the
    overlay: the tunnel cannot carry itself); BadRequest otherwise."""
    why = _endpoint_problem(state, ip)
    if why:
        raise BadRequest(f"ip_address {ip} cannot be a node's endpoint: it is {why}")
    return ip


def _endpoint_problem(state: State, ip: str) -> str | None:
    why = wire.endpoint_problem(ip)
    if why is None and ipaddress.ip_address(ip) in ipaddress.ip_network(
            state.config.wireguard_subnet, strict=False):
        why = f"inside the overlay {state.config.wireguard_subnet}"
    return why


def _refuse_endpoint(state: State, node_id: str, ip: str) -> bool:
    """True (and audited in aggregate) when a node reports an IP no peer could use."""
    why = _endpoint_problem(state, ip)
    if why:
        state.metrics.inc("node_changes_ignored")
        state.audit.record("node.change.refused", state.now(), source=node_id,
                           node_id=node_id, fields="ip_address", ip_address=ip,
                           reason=f"not a usable endpoint: {why}")
    return why is not None


def delete(state: State, node_id: str, actor: str, force: bool = False) -> dict[str, Any]:
    """Revoke every certificate of the node at once and cut it out of the mesh; then every
    subsystem lets go of it (each may refuse first, `force` is theirs to weigh)."""
    hooks.before_node_delete(state, node_id, force)
    now = state.now()
    with audited.transaction(state, "nodes", "revoked", "tasks") as (tx, note):
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
        # The deleted node is woken too: its long-poll ends and its next request fails.
        announce = mesh.redistribute(state, tx, wake=(node_id,))
        note("node.deleted", node_id=node_id, actor=actor,
             revoked_serials=node["cert_serials"])
        for serial in node["cert_serials"]:
            note("cert.revoked", node_id=node_id, serial=serial)
    state.runtime.forget(node_id)
    for key in (("seen", node_id), ("changed", "endpoint", node_id),
                ("changed", "facts", node_id)):
        state.stamps.forget(key)
    announce()
    hooks.after_node_delete(state, node_id)
    return {"id": node_id, "deleted": True, "revoked_certificates": len(node["cert_serials"])}
