"""The control plane's own WireGuard interface: bring it up, apply its peer list (OS side)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from nimbus.config import ServerConfig
from nimbus.errors import ConfigError, NimbusError
from nimbus.sysrun import Runner

log = logging.getLogger("nimbus.tunnel")


class ControlPlaneTunnel:
    """Applies the control plane's desired peers (`desired()`, wire dicts) to its interface.

    `reconcile` is serialised and reads `desired()` under its lock: joins, deletions and
    IP changes may reconcile at the same time, and the last one must apply the newest list.
    """

    def __init__(self, config: ServerConfig, runner: Runner,
                 desired: Callable[[], list[dict[str, Any]]]) -> None:
        from nimbus.wireguard.apply import WireGuardInterface

        self.config = config
        self.iface = WireGuardInterface(config.interface, runner)
        self.desired = desired
        self._lock = threading.Lock()

    def up(self, private_key: str) -> None:
        """Create or adopt the interface with the control plane's key, address and port."""
        cfg = self.config
        prefix = cfg.wireguard_subnet.split("/")[1]
        try:
            kind = self.iface.up(private_key, f"{cfg.overlay_ip}/{prefix}", cfg.wireguard_port)
        except ConfigError:
            raise
        except NimbusError as exc:
            raise ConfigError(
                f"bringing up WireGuard interface {cfg.interface}: {exc}; run as root with "
                "wireguard-tools (plus wireguard-go where the kernel has no WireGuard), "
                "or use --no-wireguard") from None
        log.info("WireGuard interface %s is up (%s), overlay %s", cfg.interface, kind,
                 cfg.overlay_ip)

    def reconcile(self) -> None:
        """Make the interface's peers exactly `desired()`; failures are logged and retried
        on the next change, never raised into the request that changed the mesh."""
        from nimbus.wireguard.config import Peer

        with self._lock:
            try:
                self.iface.apply_peers([Peer.from_dict(p) for p in self.desired()])
            except Exception as exc:  # noqa: BLE001 - logged, retried on the next change
                log.error("applying control-plane peers failed: %s", exc)
