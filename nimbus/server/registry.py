"""What a subsystem declares to the core: its task types, node-lifecycle hooks, events, queries.

A subsystem (Swarm, NFS volumes, S3, …) is one package `nimbus/server/<name>/` whose
`SUBSYSTEM` is a `Subsystem`. The core (nodes, mesh, tasks) never imports a subsystem: it
calls what `State.subsystems` hands it, through `server/hooks.py`. The list itself is
assembled in `server/subsystems.py`, above `State`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nimbus.server.tasks import NOOP, TaskType

if TYPE_CHECKING:
    from nimbus.server.state import State

# (state, node_id, force) -> None; raise errors.Conflict with the reason to refuse.
NodeCheck = Callable[["State", str, bool], None]
# (state, node_id) -> None, after the node was deleted and revoked.
NodeHook = Callable[["State", str], None]


@dataclass(frozen=True)
class Subsystem:
    name: str
    task_types: tuple[TaskType, ...] = ()
    check_node_delete: NodeCheck | None = None
    node_deleted: NodeHook | None = None
    # event name -> fn(state, **kw); called after the emitter's commit (hooks.emit).
    listeners: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    # query name -> fn(state, **kw); exactly one subsystem provides each (hooks.query).
    queries: Mapping[str, Callable[..., Any]] = field(default_factory=dict)


def task_types(subsystems: tuple[Subsystem, ...]) -> dict[str, TaskType]:
    """Every registered task type by name; a name registered twice is a programming error."""
    found: dict[str, TaskType] = {NOOP.name: NOOP}
    for sub in subsystems:
        for task_type in sub.task_types:
            if task_type.name in found:
                raise RuntimeError(f"task type {task_type.name} is registered twice")
            found[task_type.name] = task_type
    return found


def check(subsystems: tuple[Subsystem, ...]) -> tuple[Subsystem, ...]:
    """The list as given, after refusing two subsystems of one name or one query."""
    names: set[str] = set()
    queries: set[str] = set()
    for sub in subsystems:
        if sub.name in names:
            raise RuntimeError(f"subsystem {sub.name} is registered twice")
        names.add(sub.name)
        for query in sub.queries:
            if query in queries:
                raise RuntimeError(f"query {query} has two providers")
            queries.add(query)
    task_types(subsystems)
    return subsystems
