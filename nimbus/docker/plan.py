"""Pure Docker Swarm planning: the `docker` argv of each step and parsers of its JSON output.

Every Swarm port is bound to the node's WireGuard address: management (2377/tcp) through
--listen-addr, gossip (7946) through --advertise-addr, the VXLAN data path (4789/udp)
through --data-path-addr. No I/O here; `nimbus.docker.engine` runs the plans.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any

SWARM_PORT = 2377
# VXLAN (50 bytes) inside WireGuard (80 bytes over IPv6, 60 over IPv4) inside 1500.
OVERLAY_MTU = 1370
MTU_OPT = "com.docker.network.driver.mtu"
INGRESS = "ingress"
_STACK_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_NODE_ID_RE = re.compile(r"^[a-z0-9]{25}$")


def overlay_ip(addr: str) -> str:
    """The address as a plain IP (no prefix); ValueError otherwise."""
    return str(ipaddress.ip_address(addr.split("/", 1)[0]))


def check_stack_name(name: str) -> str:
    """ValueError unless name is 1-63 of [a-z0-9_-], starting with a letter or digit."""
    if not isinstance(name, str) or not _STACK_RE.fullmatch(name):
        raise ValueError("a stack name must be 1-63 characters of a-z, 0-9, '_' and '-', "
                         "starting with a letter or digit")
    return name


def check_swarm_node_id(node_id: str) -> str:
    if not isinstance(node_id, str) or not _NODE_ID_RE.fullmatch(node_id):
        raise ValueError(f"{node_id!r} is not a swarm node id")
    return node_id


def init_argv(addr: str) -> list[str]:
    """`docker swarm init` with every Swarm port on the overlay address."""
    ip = overlay_ip(addr)
    return ["swarm", "init", "--advertise-addr", ip, "--listen-addr", f"{ip}:{SWARM_PORT}",
            "--data-path-addr", ip]


def join_request(addr: str, manager_addr: str, token: str) -> dict[str, Any]:
    """Body of the Engine API's POST /swarm/join (the token never goes on an argv).

    SECURITY: `docker swarm join --token` would put the join token on the command line,
    readable by every local user in /proc; the API call carries it in the request body
    over the engine's root-only unix socket instead.
    """
    ip, mgr = overlay_ip(addr), overlay_ip(manager_addr)
    return {"ListenAddr": f"{ip}:{SWARM_PORT}", "AdvertiseAddr": ip, "DataPathAddr": ip,
            "RemoteAddrs": [f"{mgr}:{SWARM_PORT}"], "JoinToken": token}


def ingress_mtu_argv() -> list[list[str]]:
    """Recreate the ingress network with the overlay MTU (`network rm` asks: answer y)."""
    return [["network", "rm", INGRESS],
            ["network", "create", "--driver", "overlay", "--ingress", "--opt",
             f"{MTU_OPT}={OVERLAY_MTU}", INGRESS]]


def leave_argv(force: bool = True) -> list[str]:
    return ["swarm", "leave", *(["--force"] if force else [])]


def node_rm_argv(swarm_node_id: str, force: bool = True) -> list[str]:
    return ["node", "rm", *(["--force"] if force else []), check_swarm_node_id(swarm_node_id)]


def promote_argv(swarm_node_id: str) -> list[str]:
    return ["node", "promote", check_swarm_node_id(swarm_node_id)]


def demote_argv(swarm_node_id: str) -> list[str]:
    return ["node", "demote", check_swarm_node_id(swarm_node_id)]


def node_ls_argv() -> list[str]:
    return ["node", "ls", "--format", "{{json .}}"]


def info_argv() -> list[str]:
    return ["info", "--format", "{{json .}}"]


def stack_deploy_argv(name: str, compose_path: str) -> list[str]:
    return ["stack", "deploy", "--compose-file", compose_path, check_stack_name(name)]


def stack_rm_argv(name: str) -> list[str]:
    return ["stack", "rm", check_stack_name(name)]


# -- parsing ------------------------------------------------------------------------------

def json_lines(text: str) -> list[dict[str, Any]]:
    """Objects of `--format '{{json .}}'` output (one per line); other lines are skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def parse_info(text: str) -> dict[str, Any]:
    """`docker info` JSON -> {version, swarm_state, swarm_node_id, manager, manager_addr}."""
    objs = json_lines(text)
    if not objs:
        raise ValueError("docker info printed no JSON")
    info = objs[0]
    swarm = info.get("Swarm") or {}
    remote = [m.get("Addr", "") for m in swarm.get("RemoteManagers") or [] if isinstance(m, dict)]
    return {"version": str(info.get("ServerVersion", "")),
            "swarm_state": str(swarm.get("LocalNodeState") or "inactive"),
            "swarm_node_id": str(swarm.get("NodeID") or ""),
            "swarm_id": str((swarm.get("Cluster") or {}).get("ID") or ""),
            "manager": bool(swarm.get("ControlAvailable")),
            "manager_addrs": sorted(a for a in remote if a)}


def parse_nodes(text: str) -> list[dict[str, Any]]:
    """`docker node ls` JSON lines -> [{swarm_node_id, hostname, role, state, ...}]."""
    nodes = []
    for n in json_lines(text):
        manager_status = str(n.get("ManagerStatus") or "")
        nodes.append({"swarm_node_id": str(n.get("ID", "")),
                      "hostname": str(n.get("Hostname", "")),
                      "role": "manager" if manager_status else "worker",
                      "leader": manager_status == "Leader",
                      "state": str(n.get("Status", "")).lower(),
                      "availability": str(n.get("Availability", "")).lower(),
                      "engine_version": str(n.get("EngineVersion", ""))})
    return nodes


def totals(services: Iterable[dict[str, Any]]) -> dict[str, int]:
    services = list(services)
    return {"running": sum(s["running"] for s in services),
            "desired": sum(s["desired"] for s in services)}
