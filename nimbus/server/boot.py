"""open_state: a control plane's data dir, keys, store and subsystems, assembled into a State.

This is the one place above `State` that knows the subsystem list (`server/subsystems.py`);
`state.py` itself imports no subsystem, so no subsystem sits in an import loop with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from nimbus.config import ServerConfig
from nimbus.security.secretbox import SecretBox
from nimbus.server import registry
from nimbus.server.audit import AuditLog
from nimbus.server.ca import KeyMaterial
from nimbus.server.clock import Stamps
from nimbus.server.runtime import Runtime
from nimbus.server.state import State
from nimbus.server.subsystems import SUBSYSTEMS
from nimbus.store import Store


def open_state(config: ServerConfig, clock: Callable[[], float] = time.time,
               monotonic: Callable[[], float] = time.monotonic) -> State:
    """Open (creating on first use) the data dir, keys and store of a control plane."""
    data_dir = config.data_path
    keys = KeyMaterial(data_dir, clock())
    store = Store(data_dir / "store")
    box = SecretBox.from_file(data_dir / "store.key")
    return State(config=config, store=store, keys=keys, box=box,
                 audit=AuditLog(data_dir / "audit.log", config.audit_max_bytes,
                                config.audit_files, config.audit_aggregate_sec),
                 runtime=Runtime(store), subsystems=SUBSYSTEMS,
                 task_types=registry.task_types(SUBSYSTEMS), clock=clock,
                 stamps=Stamps(clock, monotonic))
