"""State: the one object through which every cross-subsystem operation goes.

Every service the control plane holds is a typed field here, built once by
`boot.open_state` and passed in explicitly; nothing installs itself later. The one
exception is `tunnel`, which only exists while `nimbus serve` runs with WireGuard:
`server/main.py` sets it when it brings the interface up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nimbus.config import ServerConfig
from nimbus.security.secretbox import SecretBox
from nimbus.server.audit import AuditLog
from nimbus.server.ca import KeyMaterial
from nimbus.server.clock import Stamps
from nimbus.server.fetches import Fetches
from nimbus.server.longpoll import Waiters
from nimbus.server.metrics import Metrics
from nimbus.server.ratelimit import LoginThrottle
from nimbus.server.registry import Subsystem
from nimbus.server.runtime import Runtime
from nimbus.server.tasks import TaskType
from nimbus.store import Store

if TYPE_CHECKING:
    from nimbus.server.tunnel import ControlPlaneTunnel


@dataclass
class State:
    config: ServerConfig
    store: Store
    keys: KeyMaterial
    box: SecretBox
    audit: AuditLog
    runtime: Runtime  # hot node data (heartbeats) in memory
    subsystems: tuple[Subsystem, ...]  # handed in by boot.open_state (server/subsystems.py)
    task_types: dict[str, TaskType]  # every task type the queue accepts, by name
    waiters: Waiters = field(default_factory=Waiters)  # long-polling agents
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    # Monotonic ages of node heartbeats and task deliveries (durations never follow the
    # wall clock); open_state builds it on the same clocks.
    stamps: Stamps = field(default_factory=Stamps)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    fetches: Fetches = field(default_factory=Fetches)  # log lines on their way to a reader
    # The control plane's own WireGuard interface while `nimbus serve` runs it, else None.
    tunnel: ControlPlaneTunnel | None = None
    # nodes.listing_json's cache: (nodes snapshot, runtime version, expires at, body).
    node_listing: tuple[Any, int, float, bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.config.data_path

    def now(self) -> float:
        return self.clock()
