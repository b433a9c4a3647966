"""Replica counts a stack runs with: `service scale`, `stop` and `start` (pure).

The compose file stays as the operator wrote it; the stack record keeps the scaled counts
and a stopped flag, and `apply` writes them into a copy of the file each time it is
deployed. A stopped stack keeps its services, networks and configuration: replicated
services get 0 replicas, global ones a placement constraint no node satisfies.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from nimbus.docker.inspect import MAX_REPLICAS

STOPPED_CONSTRAINT = "node.labels.nimbus-stopped==true"  # a label Nimbus never sets


def is_global(svc: Mapping[str, Any]) -> bool:
    return ((svc.get("deploy") or {}).get("mode") or "replicated") == "global"


def parse(args: Iterable[str]) -> dict[str, int]:
    """['web=3', 'db=1'] -> {'web': 3, 'db': 1}; ValueError with the offending word."""
    out: dict[str, int] = {}
    for arg in args:
        name, sep, raw = arg.partition("=")
        if not sep or not name or not raw.strip().isdigit():
            raise ValueError(f"scale expects SERVICE=REPLICAS (a whole number), got "
                             f"{arg[:64]!r}")
        out[name] = int(raw)
    if not out:
        raise ValueError("scale needs at least one SERVICE=REPLICAS")
    return out


def check(compose: Mapping[str, Any], wanted: Mapping[str, Any], stack: str) -> dict[str, int]:
    """The counts if every service exists, is replicated and 0 <= n <= MAX_REPLICAS."""
    services = compose.get("services") or {}
    out: dict[str, int] = {}
    for name, n in wanted.items():
        if name not in services:
            known = ", ".join(sorted(services)[:10])
            raise ValueError(f"stack {stack} has no service {str(name)[:64]!r} (it has: "
                             f"{known})")
        if is_global(services[name]):
            raise ValueError(f"service {name} is global (one task per node): it cannot be "
                             "scaled")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_REPLICAS:
            raise ValueError(f"replicas of {name} must be a whole number from 0 to "
                             f"{MAX_REPLICAS}")
        out[name] = n
    return out


def apply(compose: Mapping[str, Any], replicas: Mapping[str, int],
          stopped: bool) -> dict[str, Any]:
    """A copy of the compose dict with the scaled counts, or every service stopped."""
    out = copy.deepcopy(dict(compose))
    for name, svc in (out.get("services") or {}).items():
        deploy = svc.setdefault("deploy", {})
        if is_global(svc):
            if stopped:
                placement = deploy.setdefault("placement", {})
                placement["constraints"] = [*(placement.get("constraints") or []),
                                            STOPPED_CONSTRAINT]
        elif stopped:
            deploy["replicas"] = 0
        elif name in replicas:
            deploy["replicas"] = int(replicas[name])
    return out


def declared(compose: Mapping[str, Any], replicas: Mapping[str, int]) -> dict[str, Any]:
    """{service: replicas or 'global'} the stack runs with when started."""
    out: dict[str, Any] = {}
    for name, svc in (compose.get("services") or {}).items():
        if is_global(svc):
            out[name] = "global"
        else:
            out[name] = replicas.get(name, (svc.get("deploy") or {}).get("replicas", 1))
    return out
