"""Overlay address allocation (pure): the lowest free host address, .1 reserved."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from nimbus.errors import Conflict
from nimbus.wire import control_plane_ip


def allocate(subnet: str, used: Iterable[str]) -> str:
    """Lowest host address of subnet that is neither used nor the control plane's."""
    net = ipaddress.ip_network(subnet)
    taken = {ipaddress.ip_address(ip) for ip in [*used, control_plane_ip(subnet)]}
    for candidate in net.hosts():
        if candidate not in taken:
            return str(candidate)
    raise Conflict(f"the overlay subnet {subnet} has no free address left")
