"""The S3 subsystem: SeaweedFS instances across nodes (`instances`), what describe shows
(`status`), their task types (`tasks`); `SUBSYSTEM` is what it declares to the core.

A node delete is refused while the node stores an instance's data, unless forced; forced,
the instance shows the node as deleted and turns `degraded`.
"""

from __future__ import annotations

from nimbus.server.registry import Subsystem
from nimbus.server.s3 import instances
from nimbus.server.s3.tasks import TASK_TYPES

SUBSYSTEM = Subsystem(
    name="s3",
    task_types=TASK_TYPES,
    check_node_delete=instances.check_node_delete,
    node_deleted=instances.node_deleted,
)
