"""The core's calls into the subsystems: node-delete hooks, events and queries.

Core modules and subsystems alike go through these functions instead of importing a
subsystem; `State.subsystems` (assembled in `server/subsystems.py`) is the one list.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nimbus.server.state import State

log = logging.getLogger("nimbus.server.hooks")


def before_node_delete(state: State, node_id: str, force: bool) -> None:
    """Every subsystem may refuse (errors.Conflict naming why); `force` is theirs to weigh."""
    for sub in state.subsystems:
        if sub.check_node_delete is not None:
            sub.check_node_delete(state, node_id, force)


def after_node_delete(state: State, node_id: str) -> None:
    """The node is revoked and out of the mesh: each subsystem lets go of it.

    One subsystem failing must not keep the others from cleaning up; the failure is logged.
    """
    for sub in state.subsystems:
        if sub.node_deleted is None:
            continue
        try:
            sub.node_deleted(state, node_id)
        except Exception:
            log.exception("subsystem %s: clean-up after deleting %s failed", sub.name, node_id)


def emit(state: State, event: str, **kw: Any) -> list[Any]:
    """Call every listener of `event` (after the emitter's commit); their results, in order."""
    return [sub.listeners[event](state, **kw) for sub in state.subsystems
            if event in sub.listeners]


def query(state: State, name: str, **kw: Any) -> Any:
    """Ask the one subsystem that provides `name`; a missing provider is a programming error."""
    for sub in state.subsystems:
        if name in sub.queries:
            return sub.queries[name](state, **kw)
    raise LookupError(f"no subsystem answers {name!r}")
