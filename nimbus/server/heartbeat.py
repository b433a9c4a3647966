"""Heartbeats: a node's live metrics into memory, its changed facts into the store."""

from __future__ import annotations

from typing import Any

from nimbus.server import nodes
from nimbus.server.state import State

LIVE_FIELDS = ("cpu", "memory", "disk")
FACT_FIELDS = ("hostname", "arch", "agent_version")


def heartbeat(state: State, node_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Record metrics in memory (never a disk write); a changed fact or public IP goes to
    the store and, for an IP, to every node's peer list."""
    live = {k: body[k] for k in LIVE_FIELDS if k in body}
    live["last_seen"] = round(state.now(), 3)
    live["processes"] = body.get("processes") or {}  # supervised processes: name -> state
    facts = {k: body[k] for k in FACT_FIELDS if k in body}
    facts["docker"] = body.get("docker")  # absent: no Docker Engine on the node (now)
    facts["tools"] = body.get("tools") or {}  # what the subsystems can run there
    nodes.heard(state, node_id, live, facts, body.get("ip_address"))
    state.metrics.inc("heartbeats")
    return {"next_heartbeat_sec": state.config.heartbeat_interval_sec}
