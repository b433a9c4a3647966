"""Compose files for `docker stack deploy`: validation and the overlay MTU rewrite (pure).

A compose file reaches the control plane as a JSON object (the CLI parses YAML; see
docs/decisions.md). Before it is sent to the swarm manager every overlay network of the
stack, including the `default` network services get when they name none, is given
MTU 1370 (VXLAN inside WireGuard) unless the file sets its own.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from nimbus.docker.plan import MTU_OPT, OVERLAY_MTU

# `docker stack deploy` (Docker 20.10) needs a 3.x version key; newer CLIs ignore it.
DEFAULT_VERSION = "3.8"
MAX_COMPOSE_BYTES = 256 * 1024


def validate(compose: Any) -> dict[str, Any]:
    """ValueError (one readable sentence) unless this looks like a deployable stack file."""
    if not isinstance(compose, dict):
        raise ValueError("the compose file must be a mapping with a 'services' section")
    services = compose.get("services")
    if not isinstance(services, dict) or not services:
        raise ValueError("the compose file has no services")
    for name, svc in services.items():
        if not isinstance(svc, dict):
            raise ValueError(f"service {name!r} must be a mapping")
        if not svc.get("image"):
            raise ValueError(f"service {name!r} has no image (stacks cannot build images)")
    networks = compose.get("networks", {})
    if networks is not None and not isinstance(networks, dict):
        raise ValueError("'networks' must be a mapping")
    version = compose.get("version")
    if version is not None and not str(version).startswith("3"):
        raise ValueError(f"compose version {version!r} is not supported by `docker stack "
                         "deploy`: use 3.x (or leave 'version' out)")
    if len(json.dumps(compose)) > MAX_COMPOSE_BYTES:
        raise ValueError(f"the compose file is larger than {MAX_COMPOSE_BYTES // 1024} KiB")
    return compose


def _uses_default_network(services: dict[str, Any]) -> bool:
    for svc in services.values():
        nets = svc.get("networks")
        if not nets or "default" in nets:
            return True
    return False


def _needs_mtu(net: Any) -> bool:
    """An overlay network the file does not size itself (external ones are not ours)."""
    if not isinstance(net, dict):
        return True  # `name:` with no settings: a default (overlay) network
    if net.get("external"):
        return False
    if net.get("driver", "overlay") != "overlay":
        return False
    opts = net.get("driver_opts") or {}
    return MTU_OPT not in opts


def with_overlay_mtu(compose: dict[str, Any], mtu: int = OVERLAY_MTU) -> dict[str, Any]:
    """A copy of the compose dict in which every overlay network has driver_opts MTU."""
    out = copy.deepcopy(validate(compose))
    out.setdefault("version", DEFAULT_VERSION)
    out["version"] = str(out["version"])
    networks = out.get("networks") or {}
    if _uses_default_network(out["services"]) and "default" not in networks:
        networks["default"] = {}
    for name, net in list(networks.items()):
        if _needs_mtu(net):
            net = dict(net or {})
            net["driver_opts"] = {**(net.get("driver_opts") or {}), MTU_OPT: str(mtu)}
            networks[name] = net
    if networks:
        out["networks"] = networks
    return out
