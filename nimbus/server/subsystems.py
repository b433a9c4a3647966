"""The one list of subsystems whose task types the queue accepts.

A subsystem module lists its `TASK_TYPES` (`tasks.TaskType`s); adding a subsystem (for
example `swarm`) is one import and one entry in `MODULES`.
"""

from __future__ import annotations

from nimbus.server import mesh, swarm_tasks, tasks

MODULES = (mesh, swarm_tasks)


def task_types() -> dict[str, tasks.TaskType]:
    """Every registered task type by name; a name registered twice is a programming error."""
    found: dict[str, tasks.TaskType] = {tasks.NOOP.name: tasks.NOOP}
    for module in MODULES:
        for task_type in module.TASK_TYPES:
            if task_type.name in found:
                raise RuntimeError(f"task type {task_type.name} is registered twice")
            found[task_type.name] = task_type
    return found
