"""What a node reports about itself, and what an operator sets, cannot churn or poison the
mesh (issue 23 items 5 and 12).

Before: a compromised node flipping its IP or host name on every heartbeat had each flip
accepted (~250 a second: a `node.ip_changed` line, a nodes.json rewrite and a peer update
to every node each time), and 0.0.0.0, multicast, broadcast, link-local, `::` or `::1` went
to every peer as its endpoint — also through `node add` and `update-ip`. A node could be
named like another node's id.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nimbus.config import ServerConfig
from nimbus.errors import BadRequest
from nimbus.server import mesh, nodes
from nimbus.server.app import create_app
from nimbus.server.boot import open_state
from tests.server.conftest import Clock, InProcess

UNUSABLE = ["0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250", "255.255.255.255",
            "169.254.10.1", "127.0.0.1", "127.1.2.3", "240.0.0.1", "::", "::1", "ff02::1",
            "fe80::1", "::ffff:127.0.0.1", "fec0::1"]
USABLE = ["192.0.2.7", "10.1.2.3", "172.16.5.5", "192.168.1.20", "100.64.0.9", "fd00::7",
          "2001:db8::7", "203.0.113.9"]


@pytest.fixture
def cp(tmp_path: Path) -> InProcess:
    """A control plane in-process, its clocks under the test's hand."""
    clock = Clock()
    config = ServerConfig(data_dir=str(tmp_path / "data"), wireguard=False).validate()
    state = open_state(config, clock=clock, monotonic=clock)
    return InProcess(state, clock, create_app(state))


def _beat(cp: InProcess, cert: str, **body: object) -> None:
    answer = cp.call("POST", "/v1/internal/heartbeat", body, cert_pem=cert)
    assert answer.status == 200, answer.body  # the node stays alive whatever it claims


def _audit(cp: InProcess, event: str) -> list[dict]:
    cp.state.audit.flush()
    return [e for e in cp.state.audit.read() if e["event"] == event]


def _peer_updates(cp: InProcess, node_id: str) -> int:
    return sum(1 for t in cp.state.store.read("tasks").values()
               if t["node_id"] == node_id and t["type"] == mesh.UPDATE_PEERS)


def test_a_node_flipping_its_ip_and_hostname_on_every_heartbeat_moves_once(cp):
    a, cert = cp.joined_node("192.0.2.10")
    b, _ = cp.joined_node("192.0.2.11")
    _beat(cp, cert)  # the join's own first write (its WireGuard key) out of the way
    updates = _peer_updates(cp, b)
    for i in range(250):
        cp.clock.now += 0.004  # 250 heartbeats a second
        _beat(cp, cert, ip_address=f"198.51.100.{i % 250 + 1}", hostname=f"evil-{i}")
    node = cp.state.store.read("nodes")[a]
    assert (node["ip_address"], node["hostname"]) == ("198.51.100.1", "evil-0")
    assert len(_audit(cp, "node.ip_changed")) == 1
    assert _peer_updates(cp, b) <= updates + 1  # coalesced: at most one more queued
    refused = _audit(cp, "node.change.refused")
    assert len(refused) == 2 and refused[1]["aggregated"] and refused[1]["count"] == 248
    assert refused[0]["source"] == a and "ip_address" in refused[0]["fields"]
    assert cp.state.metrics.counters["node_changes_ignored"] == 249


def test_a_steady_flip_writes_the_store_once_per_interval(cp):
    a, cert = cp.joined_node("192.0.2.10")
    _beat(cp, cert, ip_address="198.51.100.1")
    snapshot = cp.state.store.read("nodes")
    for i in range(2, 60):
        cp.clock.now += 5  # a heartbeat every 5 s for almost 5 minutes
        _beat(cp, cert, ip_address=f"198.51.100.{i}")
    assert cp.state.store.read("nodes") is snapshot  # not one store write
    cp.clock.now += nodes.ENDPOINT_CHANGE_SEC
    _beat(cp, cert, ip_address="198.51.100.99")  # the interval is over: accepted again
    assert cp.state.store.read("nodes")[a]["ip_address"] == "198.51.100.99"
    assert len(_audit(cp, "node.ip_changed")) == 2


def test_a_held_back_change_arrives_after_the_interval(cp):
    a, cert = cp.joined_node("192.0.2.10")
    _beat(cp, cert, hostname="first")
    _beat(cp, cert, hostname="second")  # too soon: ignored, not lost
    assert cp.state.store.read("nodes")[a]["hostname"] == "first"
    cp.clock.now += nodes.ENDPOINT_CHANGE_SEC + 1
    _beat(cp, cert, hostname="second")
    assert cp.state.store.read("nodes")[a]["hostname"] == "second"


def test_flipping_versions_or_docker_facts_writes_at_most_once_a_minute(cp):
    a, cert = cp.joined_node("192.0.2.10")
    _beat(cp, cert, agent_version="1.0.0")
    snapshot = cp.state.store.read("nodes")
    for i in range(100):
        cp.clock.now += 0.5
        _beat(cp, cert, agent_version=f"1.0.{i + 1}")
    assert cp.state.store.read("nodes") is snapshot
    cp.clock.now += nodes.FACT_CHANGE_SEC
    _beat(cp, cert, agent_version="2.0.0")
    assert cp.state.store.read("nodes")[a]["agent_version"] == "2.0.0"


@pytest.mark.parametrize("ip", [*UNUSABLE, "10.106.103.77"])  # the last: inside the overlay
def test_a_heartbeat_with_an_unusable_ip_keeps_the_old_endpoint(cp, ip):
    a, cert = cp.joined_node("192.0.2.10")
    b, _ = cp.joined_node("192.0.2.11")
    updates = _peer_updates(cp, b)
    _beat(cp, cert, ip_address=ip)
    assert cp.state.store.read("nodes")[a]["ip_address"] == "192.0.2.10"
    assert _peer_updates(cp, b) == updates
    assert all(p["endpoint"] == "192.0.2.10:51820" for p in mesh.peers_for(cp.state, b)
               if p["node_id"] == a)
    assert "not a usable endpoint" in _audit(cp, "node.change.refused")[0]["reason"]


@pytest.mark.parametrize("ip", USABLE)
def test_private_and_public_unicast_ips_stay_usable(cp, ip):
    a, cert = cp.joined_node("192.0.2.10")
    _beat(cp, cert, ip_address=ip)
    assert cp.state.store.read("nodes")[a]["ip_address"] == ip


def test_node_add_and_update_ip_refuse_unusable_ips(server, ops):
    node = ops.request("POST", "/v1/nodes", {"ip_address": "192.0.2.5", "name": "n1"})["node"]
    for ip in UNUSABLE:
        with pytest.raises(BadRequest, match="cannot be a node's endpoint"):
            ops.request("POST", "/v1/nodes", {"ip_address": ip})
        with pytest.raises(BadRequest, match="cannot be a node's endpoint"):
            ops.request("POST", f"/v1/nodes/{node['id']}/ip", {"ip_address": ip})
    assert [n["ip_address"] for n in ops.request("GET", "/v1/nodes")] == ["192.0.2.5"]
    for ip in USABLE:
        assert ops.request("POST", f"/v1/nodes/{node['id']}/ip", {"ip_address": ip})


def test_node_add_refuses_an_address_inside_the_overlay(cp):
    with pytest.raises(BadRequest, match="inside the overlay"):
        nodes.create(cp.state, "10.106.103.9", None, actor="test")


def test_a_node_cannot_be_named_like_a_node_id(server, ops):
    first = ops.request("POST", "/v1/nodes", {"ip_address": "192.0.2.5"})["node"]
    with pytest.raises(BadRequest, match="must not look like a node id"):
        ops.request("POST", "/v1/nodes", {"ip_address": "192.0.2.6", "name": first["id"]})
    with pytest.raises(BadRequest, match="must not look like a node id"):
        ops.request("POST", "/v1/nodes", {"ip_address": "192.0.2.6",
                                          "name": "node-0123456789abcdef"})
    assert len(ops.request("GET", "/v1/nodes")) == 1
