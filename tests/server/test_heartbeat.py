"""A heartbeat through the whole application, in-process: memory, store, mesh, tasks."""

from __future__ import annotations

from nimbus.server import mesh


def test_a_steady_heartbeat_touches_only_memory(inproc):
    node_id, cert = inproc.joined_node()
    # The first heartbeat after a join confirms the node's own WireGuard key (a write).
    assert inproc.call("POST", "/v1/internal/heartbeat", {}, cert_pem=cert).status == 200
    before = inproc.state.store.read("nodes")
    inproc.clock.now += 5
    answer = inproc.call("POST", "/v1/internal/heartbeat",
                         {"cpu": {"count": 2, "usage": 0.5}}, cert_pem=cert)
    assert answer.status == 200
    assert answer.body["data"]["next_heartbeat_sec"] == inproc.state.config.heartbeat_interval_sec
    assert inproc.state.store.read("nodes") is before  # no store write at all
    live = inproc.state.runtime.get(node_id)
    assert live["cpu"] == {"count": 2, "usage": 0.5} and live["last_seen"] == inproc.clock.now
    assert inproc.state.metrics.counters["heartbeats"] == 2


def test_a_new_public_ip_moves_the_node_for_every_other_node(inproc):
    a, cert_a = inproc.joined_node("192.0.2.10")
    b, _cert_b = inproc.joined_node("192.0.2.11")
    open_before = {t["id"] for t in inproc.state.store.read("tasks").values()}
    answer = inproc.call("POST", "/v1/internal/heartbeat",
                         {"ip_address": "198.51.100.7", "hostname": "moved"}, cert_pem=cert_a)
    assert answer.status == 200
    node = inproc.state.store.read("nodes")[a]
    assert (node["ip_address"], node["reported_ip"], node["hostname"]) == (
        "198.51.100.7", "198.51.100.7", "moved")
    new = [t for t in inproc.state.store.read("tasks").values() if t["id"] not in open_before]
    assert {(t["node_id"], t["type"]) for t in new} == {(b, mesh.UPDATE_PEERS)}
    peer = next(p for p in mesh.peers_for(inproc.state, b) if p["node_id"] == a)
    assert peer["endpoint"] == f"198.51.100.7:{node['wireguard_port']}"
    events = [e["event"] for e in inproc.state.audit.read()]
    assert "node.ip_changed" in events


def test_a_heartbeat_with_an_unknown_field_changes_nothing(inproc):
    node_id, cert = inproc.joined_node()
    before = inproc.state.runtime.get(node_id)
    answer = inproc.call("POST", "/v1/internal/heartbeat", {"cpu_temp": 90}, cert_pem=cert)
    assert answer.status == 400 and answer.body == {"error": "unknown field: cpu_temp"}
    assert inproc.state.runtime.get(node_id) == before


def test_a_heartbeat_without_a_client_certificate_is_refused(inproc):
    answer = inproc.call("POST", "/v1/internal/heartbeat", {})
    assert answer.status == 401 and "certificate" in answer.body["error"]
