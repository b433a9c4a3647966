"""An agent checks every peer list before applying it (issue 23 item 9).

Before: `update_wireguard_peers` applied whatever it was sent, so a peer routing 0.0.0.0/0
(or the node's LAN) into the tunnel, or a multicast endpoint, went straight into `wg set`.
Now one bad peer fails the whole task and nothing is applied or remembered.
"""

from __future__ import annotations

from typing import Any

import pytest

from nimbus.agent import tasks
from nimbus.agent.enroll import _apply_saved_peers
from nimbus.docker import plan
from nimbus.security.wgkeys import generate_keypair

SUBNET = "10.106.103.0/24"


def _peer(ip: str = "10.106.103.7/32", endpoint: str | None = "192.0.2.7:51820",
          **extra: Any) -> dict[str, Any]:
    return {"node_id": "node-0123456789abcdef", "name": "n", "public_key": generate_keypair()[1],
            "endpoint": endpoint, "allowed_ips": [ip] if isinstance(ip, str) else ip,
            "persistent_keepalive": 25, **extra}


class RecordingInterface:
    def __init__(self) -> None:
        self.applied: list[Any] = []

    def apply_peers(self, peers: list[Any]) -> dict[str, int]:
        self.applied.append(peers)
        return {"added": len(peers), "updated": 0, "removed": 0}


def _run(peers: list[dict[str, Any]]) -> tuple[str, str, RecordingInterface, list[Any]]:
    iface, remembered = RecordingInterface(), []
    ctx = tasks.TaskContext("node-00000000000000aa", iface, remembered.append, subnet=SUBNET,
                            overlay_ip="10.106.103.2")
    status, output = tasks.run_task(ctx, {"id": "t", "type": "update_wireguard_peers",
                                          "payload": {"peers": peers}})
    return status, output, iface, remembered


HOSTILE_ALLOWED_IPS = [
    "0.0.0.0/0", "::/0", "10.106.103.0/24",  # the default route, the whole overlay
    "192.168.1.0/24", "192.168.1.5/32",  # the node's LAN, a host outside the overlay
    "10.106.104.7/32", "10.106.103.0/32", "10.106.103.255/32",  # outside; network; broadcast
    ["10.106.103.7/32", "10.106.103.8/32"], [],  # two addresses; none
    "10.106.103.2/32",  # this node's own address: its traffic to itself into the tunnel
]
HOSTILE_ENDPOINTS = [
    "0.0.0.0:51820", "224.0.0.1:51820", "239.1.2.3:51820", "255.255.255.255:51820",
    "169.254.1.1:51820", "127.0.0.1:51820", "240.0.0.1:51820", "[::]:51820", "[::1]:51820",
    "[ff02::1]:51820", "[fe80::1]:51820", "[::ffff:127.0.0.1]:51820",
    "10.106.103.9:51820",  # an overlay address: the tunnel would carry itself
]


@pytest.mark.parametrize("allowed", HOSTILE_ALLOWED_IPS, ids=str)
def test_a_peer_routing_more_than_one_overlay_address_fails_the_whole_task(allowed):
    status, output, iface, remembered = _run([_peer("10.106.103.1/32"), _peer(allowed)])
    assert status == "failed", output
    assert "allowed ip" in output
    assert iface.applied == [] and remembered == []


@pytest.mark.parametrize("endpoint", HOSTILE_ENDPOINTS)
def test_a_peer_with_an_unusable_endpoint_fails_the_whole_task(endpoint):
    status, output, iface, remembered = _run([_peer("10.106.103.1/32"),
                                              _peer(endpoint=endpoint)])
    assert status == "failed" and "endpoint" in output, output
    assert iface.applied == [] and remembered == []


def test_an_ordinary_mesh_peer_list_is_applied():
    peers = [_peer("10.106.103.1/32", "203.0.113.5:51820"),
             _peer("10.106.103.7/32", "192.168.10.7:51820"),  # private ranges: labs, LANs
             _peer("10.106.103.8/32", "[2001:db8::8]:51820"), _peer("10.106.103.9/32", None)]
    status, output, iface, remembered = _run(peers)
    assert status == "succeeded", output
    assert len(iface.applied[0]) == 4 and remembered == [peers]


def test_a_node_without_its_overlay_subnet_applies_nothing():
    iface = RecordingInterface()
    ctx = tasks.TaskContext("node-00000000000000aa", iface)
    status, output = tasks.run_task(ctx, {"id": "t", "type": "update_wireguard_peers",
                                          "payload": {"peers": [_peer()]}})
    assert status == "failed" and "subnet" in output and iface.applied == []


def test_a_saved_or_join_answer_peer_list_is_checked_too():
    iface = RecordingInterface()
    _apply_saved_peers(iface, [_peer("10.106.103.1/32"), _peer("0.0.0.0/0")], SUBNET)
    assert iface.applied == []
    _apply_saved_peers(iface, [_peer("10.106.103.1/32")], SUBNET)
    assert len(iface.applied) == 1


@pytest.mark.parametrize("check,value", [
    (plan.check_stack_name, "web\n"), (plan.check_swarm_node_id, "a" * 25 + "\n")])
def test_docker_names_with_a_trailing_newline_are_refused(check, value):
    # Before: `re.match` with `$` let "web\n" through into docker's argv.
    with pytest.raises(ValueError):
        check(value)
    assert check(value.rstrip("\n")) == value.rstrip("\n")
