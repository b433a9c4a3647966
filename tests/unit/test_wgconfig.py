"""Tests for nimbus.wireguard.config: wire dicts, `wg show dump` parsing, planning, validation."""

from __future__ import annotations

import base64

import pytest

from nimbus.wireguard.config import (
    Change,
    Peer,
    counts,
    parse_wg_dump,
    parse_wg_dump_interface,
    plan,
    to_wg_args,
)


def key(n: int) -> str:
    return base64.b64encode(bytes([n]) * 32).decode()


A, B, C = key(1), key(2), key(3)


def peer(k: str, ip: str, endpoint: str | None = "192.0.2.1:51820", ka: int = 25) -> Peer:
    return Peer(k, endpoint, (ip,), ka)


DUMP = (
    f"{key(9)}\t{key(8)}\t51820\toff\n"
    f"{A}\t(none)\t192.0.2.1:51820\t10.106.103.2/32\t1700000000\t100\t200\t25\n"
    f"{B}\t(none)\t(none)\t10.106.103.3/32,fd00::3/128\t0\t0\t0\toff\n"
    f"{C}\t(none)\t[2001:db8::1]:51820\t(none)\t0\t0\t0\t25\n"
)


def test_parse_wg_dump_reads_peers_and_skips_interface_line():
    peers = parse_wg_dump(DUMP)
    assert set(peers) == {A, B, C}
    assert peers[A] == Peer(A, "192.0.2.1:51820", ("10.106.103.2/32",), 25)
    assert peers[B].endpoint is None
    assert peers[B].persistent_keepalive == 0
    assert peers[B].allowed_ips == ("10.106.103.3/32", "fd00::3/128")
    assert peers[C].allowed_ips == ()
    assert peers[C].endpoint == "[2001:db8::1]:51820"


def test_parse_wg_dump_of_interface_without_peers_is_empty():
    assert parse_wg_dump(f"{key(9)}\t{key(8)}\t51820\toff\n") == {}
    assert parse_wg_dump("") == {}


def test_parse_wg_dump_rejects_malformed_peer_line():
    with pytest.raises(ValueError, match="8 fields"):
        parse_wg_dump("iface line\nonly\tthree\tfields\n")


def test_parse_wg_dump_interface_drops_private_key():
    assert parse_wg_dump_interface(DUMP) == (key(8), 51820)
    assert parse_wg_dump_interface("(none)\t(none)\t0\toff\n") == (None, 0)


def test_peer_dict_round_trip_ignores_node_id_and_name():
    d = {
        "public_key": A,
        "endpoint": "192.0.2.1:51820",
        "allowed_ips": ["10.106.103.2/32"],
        "persistent_keepalive": 25,
        "node_id": "n-1",
        "name": "pi-1",
    }
    p = Peer.from_dict(d)
    assert p == peer(A, "10.106.103.2/32")
    assert p.to_dict() == {k: v for k, v in d.items() if k not in ("node_id", "name")}
    assert Peer.from_dict({"public_key": A, "allowed_ips": []}).persistent_keepalive == 25


def test_plan_of_identical_sets_is_empty():
    current = parse_wg_dump(DUMP)
    desired = list(current.values())
    assert plan(current, desired) == []
    assert to_wg_args("wg0", plan(current, desired)) == []


def test_plan_ignores_order_and_ip_formatting():
    current = {A: Peer(A, "192.0.2.1:51820", ("10.0.0.2/32", "10.0.1.0/24"))}
    desired = [Peer(A, "192.0.2.1:51820", ("10.0.1.0/24", "10.0.0.2/32"))]
    assert plan(current, desired) == []


def test_plan_keeps_learned_endpoint_when_none_desired():
    current = {A: peer(A, "10.0.0.2/32", endpoint="198.51.100.7:40000")}
    assert plan(current, [peer(A, "10.0.0.2/32", endpoint=None)]) == []


def test_plan_add_remove_and_endpoint_change():
    current = {A: peer(A, "10.0.0.2/32"), B: peer(B, "10.0.0.3/32")}
    moved = peer(A, "10.0.0.2/32", endpoint="192.0.2.99:51820")
    new = peer(C, "10.0.0.4/32")
    changes = plan(current, [moved, new])
    assert changes == [
        Change("remove", B),
        Change("update", A, moved),
        Change("add", C, new),
    ]
    assert counts(changes) == {"added": 1, "updated": 1, "removed": 1}


def test_plan_detects_allowed_ips_and_keepalive_changes():
    current = {A: peer(A, "10.0.0.2/32")}
    assert [c.action for c in plan(current, [peer(A, "10.0.0.9/32")])] == ["update"]
    assert [c.action for c in plan(current, [peer(A, "10.0.0.2/32", ka=0)])] == ["update"]


def test_to_wg_args_builds_one_command_for_the_whole_diff():
    current = {B: peer(B, "10.0.0.3/32")}
    changes = plan(current, [peer(A, "10.0.0.2/32"), peer(C, "10.0.0.4/32", None, 0)])
    assert to_wg_args("wg-nimbus", changes) == [
        "wg", "set", "wg-nimbus",
        "peer", B, "remove",
        "peer", A, "endpoint", "192.0.2.1:51820", "allowed-ips", "10.0.0.2/32",
        "persistent-keepalive", "25",
        "peer", C, "allowed-ips", "10.0.0.4/32", "persistent-keepalive", "off",
    ]  # fmt: skip


def test_plan_normalizes_ipv6_endpoint():
    changes = plan({}, [peer(A, "10.0.0.2/32", endpoint="[2001:0db8::0001]:51820")])
    assert changes[0].peer is not None
    assert changes[0].peer.endpoint == "[2001:db8::1]:51820"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Peer("short", None, ("10.0.0.2/32",)), "public key"),
        (peer(A, "10.0.0.2/33"), "not a valid CIDR"),
        (peer(A, "10.0.0.1/24"), "not a valid CIDR"),
        (peer(A, "banana"), "not a valid CIDR"),
        (peer(A, "10.0.0.2/32", endpoint="example.com:51820"), "not an IP address"),
        (peer(A, "10.0.0.2/32", endpoint="192.0.2.1"), "host:port"),
        (peer(A, "10.0.0.2/32", endpoint="192.0.2.1:0"), "port must be 1-65535"),
        (peer(A, "10.0.0.2/32", endpoint="192.0.2.1:65536"), "port must be 1-65535"),
        (peer(A, "10.0.0.2/32", endpoint="192.0.2.1:x"), "port must be 1-65535"),
        (peer(A, "10.0.0.2/32", ka=-1), "persistent_keepalive"),
    ],
)
def test_plan_rejects_invalid_desired_peers(bad, message):
    with pytest.raises(ValueError, match=message):
        plan({}, [bad])


def test_plan_rejects_duplicate_keys_and_shared_allowed_ips():
    with pytest.raises(ValueError, match="appears twice"):
        plan({}, [peer(A, "10.0.0.2/32"), peer(A, "10.0.0.3/32")])
    with pytest.raises(ValueError, match="given to both"):
        plan({}, [peer(A, "10.0.0.2/32"), peer(B, "10.0.0.2/32")])


def test_from_dict_requires_public_key():
    with pytest.raises(ValueError, match="public_key"):
        Peer.from_dict({"endpoint": None})
