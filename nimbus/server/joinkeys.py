"""Which WireGuard key of a node the control plane accepts, and when that changes.

SECURITY: the key pair in a join token travels in the token, so it is treated as spent
material. A pending node's token key is a control-plane peer only until the token
expires or is used. At the join the agent sends a public key it made itself; that
becomes the node's key everywhere, and the token's key is kept for the control plane's
peer only until the join answer has gone back through the tunnel it opened
(`end_handover`, with HANDOVER_SEC as the bound should that never run).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from nimbus.server.state import State

log = logging.getLogger("nimbus.joinkeys")
HANDOVER_SEC = 10.0
SWEEP_SEC = 1.0


def control_plane_key(node: dict[str, Any], now: float) -> str | None:
    """The key the control plane's peer for this node has now (None: no peer)."""
    join = node.get("join") or {}
    if node["state"] == "pending":
        if join.get("used") or now > float(join.get("expires_at", 0)):
            return None
        return str(node["wireguard_public_key"])
    if join.get("handover_key") and now < float(join.get("handover_until", 0)):
        return str(join["handover_key"])
    return str(node["wireguard_public_key"])


def next_change(nodes: dict[str, Any], now: float) -> float | None:
    """When control_plane_key next changes for some node by time alone."""
    times = []
    for node in nodes.values():
        join = node.get("join") or {}
        if node["state"] == "pending" and not join.get("used"):
            times.append(float(join.get("expires_at", 0)))
        if join.get("handover_key"):
            times.append(float(join.get("handover_until", 0)))
    upcoming = [t for t in times if t >= now]
    return min(upcoming, default=None)


def begin_handover(node: dict[str, Any], new_key: str, now: float) -> None:
    """At the join (inside its transaction): the node's own key replaces the token's."""
    node["join"] = {**node["join"], "handover_key": node["wireguard_public_key"],
                    "handover_until": round(now + HANDOVER_SEC, 3)}
    node["wireguard_public_key"] = new_key


def end_handover(state: State, node_id: str, reconcile: Callable[[], None]) -> None:
    """The join answer has been sent: the control plane's peer moves to the node's key."""
    with state.store.transaction("nodes") as tx:
        node = tx["nodes"].get(node_id)
        if node is not None and node.get("join"):
            node["join"] = {k: v for k, v in node["join"].items()
                            if k not in ("handover_key", "handover_until")}
    reconcile()


def start_sweep(state: State, reconcile: Callable[[], None]) -> Callable[[], None]:
    """A thread that reconciles when a token expires or a handover ends; returns stop()."""
    stop = threading.Event()

    def loop() -> None:
        # The store hands out the same snapshot object until nodes.json changes, so the walk
        # over every node (10,000 of them: ~20 ms of GIL a second, which heartbeats felt)
        # runs only when something changed or a due time has passed.
        seen = state.store.read("nodes")
        due = next_change(seen, state.now())
        while not stop.wait(SWEEP_SEC):
            now = state.now()
            passed = due is not None and now > due
            if passed:
                log.info("a join token expired or a key handover ended: reconciling peers")
                reconcile()
            nodes = state.store.read("nodes")
            if passed or nodes is not seen:
                seen, due = nodes, next_change(nodes, now)

    thread = threading.Thread(target=loop, name="nimbus-join-keys", daemon=True)
    thread.start()
    return stop.set
