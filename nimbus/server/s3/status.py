"""What an S3 instance looks like from outside: endpoint, per-node process states, status.

Status: `pending` until every node ran the current generation with every process up,
`ready` then, `degraded` while a listed node is unreachable (offline) or deleted, or one of
its processes is not running. A process's state is the newest of what the node answered
to its last `s3.apply` and what its heartbeats report (`processes`).
"""

from __future__ import annotations

from typing import Any

from nimbus.seaweed import plan
from nimbus.server import nodes
from nimbus.server.state import State


def endpoint(inst: dict[str, Any]) -> str:
    return plan.endpoint(inst["members"][0]["wireguard_ip"], inst["slot"])


def _spec(inst: dict[str, Any]) -> plan.Instance:
    ips = tuple(m["wireguard_ip"] for m in inst["members"])
    return plan.Instance(inst["id"], inst["slot"], inst["replication"], ips[0], ips)


def _member(state: State, inst: dict[str, Any], m: dict[str, Any],
            all_nodes: dict[str, Any]) -> dict[str, Any]:
    node_id = m["node_id"]
    node = all_nodes.get(node_id)
    reach = "deleted" if node is None else nodes.public_node(state, node)["status"]
    report = (inst.get("reports") or {}).get(node_id) or {}
    current = report.get("generation") == inst["generation"]
    live = (state.runtime.get(node_id).get("processes") or {}) if node else {}
    procs = {}
    for role in plan.roles_on(_spec(inst), m["wireguard_ip"]):
        heard = live.get(plan.process_name(inst["id"], role))
        answered = (report.get("processes") or {}).get(role) if current else None
        procs[role] = "unknown" if reach == "deleted" else (heard or answered or "pending")
    return {"node_id": node_id, "name": m["name"], "wireguard_ip": m["wireguard_ip"],
            "node_status": reach, "applied_generation": report.get("generation"),
            "error": report.get("error"), "processes": procs}


def _status(members: list[dict[str, Any]], generation: int) -> str:
    if any(m["node_status"] != "ready" for m in members):
        return "degraded"
    states = [s for m in members for s in m["processes"].values()]
    if all(m["applied_generation"] == generation for m in members) and all(
            s == "running" for s in states):
        return "ready"
    if all(m["applied_generation"] for m in members) and any(
            s in ("backoff", "stopped") for s in states):
        return "degraded"
    return "pending"


def _service(inst: dict[str, Any], members: list[dict[str, Any]], status: str) -> dict[str, str]:
    """What still works, in words (describe and docs/s3.md say the same)."""
    if status != "degraded":
        return {"reads": "served" if status == "ready" else "not yet",
                "writes": "accepted" if status == "ready" else "not yet"}
    gateway, down = members[0], [m for m in members if m["node_status"] != "ready"]
    if gateway in down:
        return {"reads": f"refused: the gateway node {gateway['name']} is "
                         f"{gateway['node_status']}",
                "writes": f"refused until node {gateway['name']} returns"}
    names = ", ".join(m["name"] for m in down) or "a process"
    copies = plan.REPLICATIONS[inst["replication"]]
    if copies > 1 and len(down) < len(members):
        offline = any(m["node_status"] != "deleted" for m in down)
        return {"reads": "served from the remaining copy (the first read of an object whose "
                         "other copy was on a lost node can take ~30 s)",
                "writes": f"refused: replication {inst['replication']} keeps {copies} copies "
                          f"and {names} is {'unreachable' if offline else 'deleted'}; writes "
                          f"resume {'when it returns, or ' if offline else ''}after `nimbus s3 "
                          f"update {inst['name']} --replication 000` (deleted nodes leave the "
                          "instance; new objects keep one copy)"}
    return {"reads": f"objects stored on {names} are unavailable until it returns",
            "writes": f"may fail until {names} returns"}


def public(state: State, inst: dict[str, Any]) -> dict[str, Any]:
    all_nodes = state.store.read("nodes")
    members = [_member(state, inst, m, all_nodes) for m in inst["members"]]
    status = _status(members, inst["generation"])
    return {"id": inst["id"], "name": inst["name"], "status": status,
            "endpoint": endpoint(inst), "replication": inst["replication"],
            "nodes": members, "slot": inst["slot"], "generation": inst["generation"],
            "created_at": inst["created_at"], **_service(inst, members, status)}
