"""The Swarm subsystem: Docker Swarm groups of nodes (`groups`), compose stacks on them
(`services`), their task types (`tasks`); `SUBSYSTEM` is what it declares to the core.

Events it emits: `swarm.members_changed(swarm_id)` after a member was added or removed
(also by a node delete, and when the swarm is deleted). Queries it answers:
`swarm.resolve(ref)` → swarm id (NotFound), `swarm.exists(swarm_id)` → bool,
`swarm.members(swarm_id)` → node ids, `swarm.name(swarm_id)` → its name or None,
`volume.users(volume)` → names of the services that map that NFS volume.
"""

from __future__ import annotations

from typing import Any

from nimbus.server.registry import Subsystem
from nimbus.server.state import State
from nimbus.server.swarm import groups, lifecycle, logs, services, views
from nimbus.server.swarm import tasks as swarm_tasks


def _resolve(state: State, ref: str) -> str:
    return groups.find(state.store.read(groups.COLLECTION), ref)["id"]


def _exists(state: State, swarm_id: str) -> bool:
    return swarm_id in state.store.read(groups.COLLECTION)


def _members(state: State, swarm_id: str) -> list[str]:
    s: dict[str, Any] = state.store.read(groups.COLLECTION).get(swarm_id) or {}
    return sorted(s.get("members") or {})


def _name(state: State, swarm_id: str) -> str | None:
    return (state.store.read(groups.COLLECTION).get(swarm_id) or {}).get("name")


def _volume_users(state: State, volume: str) -> list[str]:
    return sorted(name for name, rec in state.store.read(services.COLLECTION).items()
                  if volume in (rec.get("volumes") or {}).values())


SUBSYSTEM = Subsystem(
    name="swarm",
    task_types=(*swarm_tasks.TASK_TYPES, *services.TASK_TYPES, *views.TASK_TYPES,
                *logs.TASK_TYPES),
    check_node_delete=lifecycle.check_node_delete,
    node_deleted=lifecycle.node_deleted,
    queries={"swarm.resolve": _resolve, "swarm.exists": _exists, "swarm.members": _members,
             "swarm.name": _name, "volume.users": _volume_users},
)
