"""Noticing that this node was deleted: say it once, then wait quietly.

Without WireGuard a deleted node's next request is refused (401, certificate revoked). With
WireGuard the control plane drops the node's peer at once, so requests through the tunnel
just time out and the agent would log timeouts forever. While the tunnel is silent the agent
therefore asks the control plane's public address (the WireGuard endpoint's host, the API's
port, the same mTLS and CA) at most once per PROBE_EVERY_SEC whether its certificate is
still accepted. A refusal means the node was removed; an answer means the control plane is
up and only the tunnel is broken, which is logged as such.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from nimbus.client import ApiClient
from nimbus.config import AgentConfig
from nimbus.errors import NimbusError, Unauthorized

log = logging.getLogger("nimbus.agent")

RECHECK_SEC = 300.0  # how often a removed node asks again (it may have been re-admitted)
PROBE_EVERY_SEC = 60.0  # at most this often, a silent tunnel triggers a public-address probe
PROBE_TIMEOUT_SEC = 5.0


def public_api_url(config: AgentConfig, state: dict[str, Any]) -> str | None:
    """https://<control plane's public address>:<API port>, or None when not known."""
    endpoint = state.get("control_plane_endpoint")
    if not config.wireguard or not endpoint or not config.api_url:
        return None
    host = str(endpoint).rpartition(":")[0].strip("[]")
    port = urlsplit(config.api_url).port or 443
    if not host:
        return None
    return f"https://{f'[{host}]' if ':' in host else host}:{port}"


class Membership:
    """Whether the control plane still accepts this node; shared by the agent's loops."""

    def __init__(self, config: AgentConfig, state: dict[str, Any], client_files: Any,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.state = state
        self.files = client_files
        self.clock = clock
        self.removed = threading.Event()
        self._last_probe = float("-inf")

    def refused(self, exc: NimbusError) -> float:
        """The control plane refused our certificate; returns how long to wait."""
        if not self.removed.is_set():
            self.removed.set()
            log.error("this node was removed from the control plane (%s). The agent now waits "
                      "quietly and asks again every %d minutes. To bring this machine back, "
                      "add it again (`nimbus node add`) and join with the new token using a "
                      "fresh data dir (this one, %s, belongs to the deleted node).",
                      exc.message, int(RECHECK_SEC // 60), self.files.root)
        return RECHECK_SEC

    def accepted(self) -> None:
        if self.removed.is_set():
            self.removed.clear()
            log.info("the control plane accepts this node again")

    def tunnel_silent(self) -> bool:
        """A request through the tunnel failed: probe the public address (rate-limited).

        Returns True when the node is (now known to be) removed.
        """
        if self.removed.is_set():
            return True
        url = public_api_url(self.config, self.state)
        now = self.clock()
        if url is None or now - self._last_probe < PROBE_EVERY_SEC:
            return False
        self._last_probe = now
        try:
            client = ApiClient(url, ca_pem=self.files.read(self.files.ca),
                               cert_file=str(self.files.cert), key_file=str(self.files.key),
                               timeout=PROBE_TIMEOUT_SEC)
        except (NimbusError, OSError, ValueError) as exc:  # credentials unreadable
            log.debug("cannot probe the control plane's public address: %s", exc)
            return False
        try:
            client.request("POST", "/v1/internal/heartbeat", {})
        except Unauthorized as exc:
            self.refused(exc)
            return True
        except NimbusError as exc:
            log.debug("probe of the control plane's public address %s failed: %s", url, exc)
            return False
        finally:
            client.close()
        log.warning("the control plane answers at its public address %s but not through the "
                    "WireGuard tunnel: check that UDP port %d is open between them", url,
                    self.config.wireguard_port)
        return False
