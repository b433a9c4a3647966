"""The WireGuard mesh as data: every member's desired peer list, and redistributing it.

No OS changes here: `server/tunnel.py` applies the control plane's own list to its
interface, agents apply theirs when the `update_wireguard_peers` task reaches them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nimbus import wire
from nimbus.server import joinkeys, tasks
from nimbus.server.registry import Subsystem
from nimbus.server.state import State
from nimbus.wireguard.config import DEFAULT_KEEPALIVE, Peer

UPDATE_PEERS = "update_wireguard_peers"
CONTROL_PLANE = "control-plane"


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def peer_endpoint(host: str | None, port: int) -> str | None:
    """The endpoint peers are sent, or None for an address no peer could use (the dev
    mode's 127.0.0.1, a record older than wire.endpoint_ip): agents refuse a peer list
    holding one, and WireGuard learns a peer's endpoint from its handshake."""
    return None if not host or wire.endpoint_problem(host) else endpoint(host, port)


def _peer(node_id: str, name: str, public_key: str, endpoint_: str | None, overlay_ip: str
          ) -> dict[str, Any]:
    """The peer wire shape: WireGuard's fields (`Peer.to_dict`) plus who the peer is."""
    wg = Peer(public_key, endpoint_, (f"{overlay_ip}/32",), DEFAULT_KEEPALIVE)
    return {"node_id": node_id, "name": name, **wg.to_dict()}


def control_plane_peer(state: State) -> dict[str, Any]:
    cfg = state.config
    return _peer(CONTROL_PLANE, CONTROL_PLANE, state.keys.wireguard_keypair()[1],
                 peer_endpoint(cfg.public_address, cfg.wireguard_port),
                 cfg.overlay_ip)


def node_peer(node: dict[str, Any]) -> dict[str, Any]:
    port = node.get("wireguard_port", wire.WIREGUARD_PORT)
    return _peer(node["id"], node["name"], node["wireguard_public_key"],
                 peer_endpoint(node["ip_address"], port), node["wireguard_ip"])


def joined_nodes(nodes: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted((n for n in nodes.values() if n["state"] != "pending"),
                  key=lambda n: n["wireguard_ip"])


def peers_for(state: State, node_id: str | None) -> list[dict[str, Any]]:
    """Every other joined node, plus the control plane (unless it is asking for itself).

    The control plane's own list (node_id None) also has pending nodes while their token
    is valid: the join request comes through the tunnel (3.4), so the control plane must
    know the key from the join token before the node has joined. Which key, and until
    when, is `joinkeys.control_plane_key`.
    """
    nodes = state.store.read("nodes")
    if node_id is None:
        now = state.now()
        members = sorted(nodes.values(), key=lambda n: n["wireguard_ip"])
        keyed = [(n, joinkeys.control_plane_key(n, now)) for n in members]
        return [{**node_peer(n), "public_key": key} for n, key in keyed if key]
    peers = [node_peer(n) for n in joined_nodes(nodes) if n["id"] != node_id]
    peers.insert(0, control_plane_peer(state))
    return peers


def _render_peers(state: State, node_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"peers": peers_for(state, node_id)}


TASK_TYPES = (tasks.TaskType(UPDATE_PEERS, _render_peers, coalesce=True),)
# The mesh is core, but its task type is registered the way every subsystem's is.
SUBSYSTEM = Subsystem(name="wireguard", task_types=TASK_TYPES)


def redistribute(state: State, tx: dict[str, Any], except_id: str | None = None,
                 wake: tuple[str, ...] = ()) -> Callable[[], None]:
    """The mesh changed: queue a peer update for every joined node (but `except_id`) inside
    the caller's transaction on "nodes" and "tasks", so the change and its announcement
    commit together. Returns the step to run once that transaction has committed: wake
    those agents (and `wake`) and reconcile the control plane's own interface."""
    targets = [n["id"] for n in joined_nodes(tx["nodes"]) if n["id"] != except_id]
    tasks.enqueue(state, tx["tasks"], targets, UPDATE_PEERS)

    def announce() -> None:
        state.waiters.notify([*targets, *wake])
        reconcile(state)

    return announce


def reconcile(state: State) -> None:
    """Bring the control plane's interface (when it runs one) in line with the store."""
    if state.tunnel is not None:
        state.tunnel.reconcile()
