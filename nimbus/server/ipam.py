"""Overlay address allocation (pure): the lowest free host address, .1 reserved."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from nimbus.errors import Conflict


def control_plane_ip(subnet: str) -> str:
    return str(next(ipaddress.ip_network(subnet).hosts()))


def allocate(subnet: str, used: Iterable[str]) -> str:
    """Lowest host address of subnet that is neither used nor the control plane's."""
    net = ipaddress.ip_network(subnet)
    taken = {ipaddress.ip_address(ip) for ip in used}
    hosts = net.hosts()
    next(hosts)  # .1 is the control plane
    for candidate in hosts:
        if candidate not in taken:
            return str(candidate)
    raise Conflict(f"the overlay subnet {subnet} has no free address left")
