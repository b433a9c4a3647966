"""WireGuard task handlers: apply the mesh's peer list to this node's interface."""

from __future__ import annotations

from typing import Any

from nimbus.agent.tasks.base import Handler, TaskContext


def update_peers(ctx: TaskContext, payload: dict[str, Any]) -> str:
    from nimbus.wireguard.config import Peer, validate_mesh_peers

    raw = payload.get("peers")
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise ValueError("payload has no peers list")
    if not ctx.subnet:
        raise ValueError("this node does not know its overlay subnet; join it again")
    # SECURITY: one bad peer fails the whole task before anything is applied or remembered.
    peers = validate_mesh_peers((Peer.from_dict(p) for p in raw), ctx.subnet,
                                ctx.overlay_ip or None)
    if ctx.wireguard is None:
        note = f"WireGuard is disabled on this node (--no-wireguard); {len(peers)} peers noted"
    else:
        result = ctx.wireguard.apply_peers(peers)
        note = (f"{len(peers)} peers: {result['added']} added, {result['updated']} updated, "
                f"{result['removed']} removed")
    if ctx.remember_peers is not None:
        ctx.remember_peers(raw)
    return note


HANDLERS: dict[str, Handler] = {"update_wireguard_peers": update_peers}
