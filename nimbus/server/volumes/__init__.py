"""The NFS volume subsystem: records and their operations (`records`), the task types and
keeping nodes in line (`sync`); `SUBSYSTEM` is what it declares to the core.

It listens to `swarm.members_changed` and asks `swarm.resolve`, `swarm.exists`,
`swarm.members`, `swarm.name` and `volume.users` (services that map a volume) through
`server/hooks.py`; it never imports the swarm package. It answers `volume.docker_name(volume,
swarm_id)`: the Docker volume a stack maps, or one line saying why it cannot; and
`volume.attached_to(swarm_id)`: the volumes that keep a swarm from being deleted.
"""

from __future__ import annotations

from nimbus.server.registry import Subsystem
from nimbus.server.volumes import sync

SUBSYSTEM = Subsystem(
    name="volumes",
    task_types=sync.TASK_TYPES,
    check_node_delete=sync.check_node_delete,
    node_deleted=sync.node_deleted,
    listeners={"swarm.members_changed": sync.members_changed},
    queries={"volume.docker_name": sync.docker_volume_for,
             "volume.attached_to": sync.attached_to},
)
