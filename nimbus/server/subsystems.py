"""The one list of the control plane's subsystems (one line each), handed to `State`.

It sits above `State`: `boot.open_state` imports it, `state.py` does not. Adding a
subsystem is its package under `nimbus/server/` plus one entry here.
"""

from __future__ import annotations

from nimbus.server import mesh, nodelogs, s3, swarm, volumes
from nimbus.server.registry import Subsystem, check

SUBSYSTEMS: tuple[Subsystem, ...] = check((
    mesh.SUBSYSTEM,
    swarm.SUBSYSTEM,
    s3.SUBSYSTEM,
    volumes.SUBSYSTEM,
    nodelogs.SUBSYSTEM,
))
