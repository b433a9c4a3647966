"""What every agent task handler is given, and its signature."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TaskContext:
    """What a handler may touch: the node's ID and its WireGuard interface (None if off)."""

    node_id: str
    wireguard: Any = None  # a WireGuardInterface, or None in --no-wireguard mode
    # Called with the peer list (wire dicts) once applied, so a restart can re-apply it.
    remember_peers: Callable[[list[dict[str, Any]]], None] | None = None
    docker_host: str = ""  # the local Docker Engine ("" = its default socket)
    supervisor: Any = None  # the agent's agent.supervisor.Supervisor (None in bare tests)
    data_dir: Path | None = None  # the agent's data dir: subsystems keep their state under it
    overlay_ip: str = ""  # this node's WireGuard IP ("" with --no-wireguard)
    config: Any = None  # the agent's AgentConfig (tool paths such as weed_path)
    log_ring: Any = None  # the agent's own recent log lines (agent/logring.LogRing)
    subnet: str = ""  # the overlay subnet; every peer's allowed IP must lie inside it


MAX_OUTPUT = 65536  # characters of a task's output (wire.TASK_RESULT)


# (ctx, payload) -> output text; raising marks the task failed. Handlers are idempotent:
# delivery is at least once.
Handler = Callable[[TaskContext, dict[str, Any]], str]


# (agent config) -> the tool's version, or None when this node cannot run it. A task module
# exports `TOOLS = {"weed": probe}`; the daemon reports what they find in its heartbeat.
Probe = Callable[[Any], "str | None"]
