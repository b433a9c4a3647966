"""The S3 task types (server side): what a node is told to run, filled at delivery.

`s3.apply` carries only the instance id in the queue; `render` opens the sealed S3 keys,
JWT keys and the node's TLS key into the delivered payload (memory, then mTLS), so no secret
is ever in the task store. The node answers with its process states, kept on the record.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from nimbus.seaweed import plan
from nimbus.server import tasks

if TYPE_CHECKING:
    from nimbus.server.state import State

APPLY, REMOVE = "s3.apply", "s3.remove"
COLLECTION = "s3"


def secret_context(instance_id: str, what: str) -> str:
    """Associated data of one sealed secret: it opens only as this instance's `what`."""
    return f"s3:{instance_id}:{what}"


def render_apply(state: State, node_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    inst = state.store.read(COLLECTION).get(str(payload.get("instance_id")))
    if inst is None or node_id not in inst["nodes"]:
        # Deleted (or this node left it) since the task was queued: nothing to run.
        return {"instance_id": payload.get("instance_id"), "absent": True}
    iid = inst["id"]
    cert = inst["certs"][node_id]
    # SECURITY: opened only into the delivered payload, never written back.
    secrets = {k: state.box.open(v, secret_context(iid, k)) for k, v in inst["keys"].items()}
    ip = next(m["wireguard_ip"] for m in inst["members"] if m["node_id"] == node_id)
    return {
        "instance_id": iid, "generation": inst["generation"], "slot": inst["slot"], "ip": ip,
        "replication": inst["replication"], "gateway_ip": inst["members"][0]["wireguard_ip"],
        "node_ips": [m["wireguard_ip"] for m in inst["members"]],
        "access_key": inst["access_key"],
        "secret_key": state.box.open(inst["secret_key"], secret_context(iid, "secret_key")),
        "signing_keys": {k: secrets[k] for k in plan.SIGNING_KEYS},
        "tls": {"ca": state.keys.ca_pem, "cert": cert["cert"],
                "key": state.box.open(cert["key"], secret_context(iid, f"tls:{node_id}")),
                "common_name": plan.common_name(iid)},
    }


def on_apply_result(state: State, task: dict[str, Any], status: str, output: str) -> str:
    """Keep what the node reported (generation, each process's state) on the record."""
    try:
        data = json.loads(output) if status == "succeeded" else {}
    except ValueError:
        data = {}
    iid, node_id = str(task["payload"].get("instance_id")), task["node_id"]
    report = {"status": status, "at": round(state.now(), 3),
              "generation": data.get("generation") if isinstance(data, dict) else None,
              "processes": _states(data.get("processes") if isinstance(data, dict) else None),
              "error": None if status == "succeeded" else output.strip()[:300]}
    with state.store.transaction(COLLECTION) as tx:
        inst = tx[COLLECTION].get(iid)
        if inst is not None and node_id in inst["nodes"]:
            inst.setdefault("reports", {})[node_id] = report
    return output


def _states(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k)[:16]: str(v)[:16] for k, v in value.items() if k in plan.ROLES}


TASK_TYPES = (
    tasks.TaskType(APPLY, render_apply, coalesce=True, on_result=on_apply_result),
    tasks.TaskType(REMOVE),
)
