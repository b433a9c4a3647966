"""State: the one object through which every cross-subsystem operation goes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nimbus.config import ServerConfig
from nimbus.security.secretbox import SecretBox
from nimbus.server.audit import AuditLog
from nimbus.server.ca import KeyMaterial
from nimbus.server.ratelimit import LoginThrottle
from nimbus.store import Store

log = logging.getLogger("nimbus.state")


@dataclass
class State:
    config: ServerConfig
    store: Store
    keys: KeyMaterial
    box: SecretBox
    audit: AuditLog
    clock: Callable[[], float] = time.time
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    extras: dict[str, Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def data_dir(self) -> Path:
        return self.config.data_path

    def now(self) -> float:
        return self.clock()


def open_state(config: ServerConfig, clock: Callable[[], float] = time.time) -> State:
    """Open (creating on first use) the data dir, keys and store of a control plane."""
    data_dir = config.data_path
    keys = KeyMaterial(data_dir, clock())
    store = Store(data_dir / "store")
    box = SecretBox.from_file(data_dir / "store.key")
    return State(config=config, store=store, keys=keys, box=box,
                 audit=AuditLog(data_dir / "audit.log", config.audit_max_bytes,
                                config.audit_files, config.audit_aggregate_sec), clock=clock)
