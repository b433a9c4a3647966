"""Join material stops being useful (issue 9 item 6), with real WireGuard in namespaces.

A one-node lab; the join token of that node is kept (the lab normally forgets it). Then:
after the join the node's WireGuard key is one it made itself, the control plane's peer
for it moved to that key, the token's key no longer completes a handshake with the
control plane, and a pending node's peer leaves the control plane when its token expires.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nimbus import wire
from nimbus.lab.orchestrate import Lab
from nimbus.sysrun import Runner
from nimbus.wireguard.apply import WireGuardInterface
from nimbus.wireguard.config import Peer
from tests.e2e.test_lab import missing_requirements, new_id, stop_lab

pytestmark = pytest.mark.root
TOKEN_TTL = 6


class RecordingLab(Lab):
    """A lab that remembers the join tokens it hands to its agents."""

    tokens: dict[str, str]

    def add_node(self, member: str) -> str:
        token = super().add_node(member)
        self.tokens[member] = token
        return token


@pytest.fixture(scope="module")
def lab() -> Iterator[RecordingLab]:
    reason = missing_requirements()
    if reason:
        pytest.skip(f"needs root, /dev/net/tun, wireguard-go, wg, ip: {reason}")
    handle = RecordingLab(new_id())
    handle.tokens = {}
    try:
        handle.up(1, echo=lambda _: None)
        yield handle
    finally:
        stop_lab(handle.id)


def cp_peers(lab: Lab) -> set[str]:
    return lab.peer_keys(["cp"])["cp"]


def handshakes(lab: Lab, member: str, private_key: str, cp_public: str,
               wait: float = 8.0) -> bool:
    """Whether `private_key` completes a WireGuard handshake with the control plane.

    A throw-away interface in the member's namespace, with the control plane as its only
    peer and a 1 s keepalive (which starts a handshake without any routing).
    """
    name = f"h9t{secrets.token_hex(3)}"
    iface = WireGuardInterface(name, Runner(), netns=lab.net.netns(member))
    iface.up(private_key, f"10.254.{secrets.randbelow(250)}.1/32", None)
    try:
        endpoint = f"{lab.net.underlay_ip('cp')}:51820"
        iface.apply_peers([Peer(cp_public, endpoint, ("10.254.255.254/32",), 1)])
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            out = iface._run(["wg", "show", name, "latest-handshakes"]).stdout.split()
            if len(out) == 2 and out[1] != "0":
                return True
            time.sleep(0.5)
        return False
    finally:
        iface.down()


def node_record(lab: Lab, member: str) -> dict[str, Any]:
    return lab.cli_json("node", "describe", lab.info["nodes"][member]["id"])


def test_the_joined_node_uses_a_key_it_made_not_the_tokens(lab: RecordingLab):
    token = wire.decode_join_token(lab.tokens["1"])
    from nimbus.security.wgkeys import public_key

    token_public = public_key(token["wg_private_key"])
    node = node_record(lab, "1")
    assert node["wireguard_public_key"] != token_public
    peers = cp_peers(lab)
    assert node["wireguard_public_key"] in peers and token_public not in peers
    # The agent's requests still get through after its key changed: it heartbeats.
    time.sleep(3)
    assert node_record(lab, "1")["status"] == "ready"
    assert all(lab.ping(["cp", "1"], retry_for=10).values())


def test_the_tokens_key_no_longer_handshakes(lab: RecordingLab):
    token = wire.decode_join_token(lab.tokens["1"])
    assert not handshakes(lab, "1", token["wg_private_key"], token["wg_public_key"])


def test_a_pending_node_with_a_live_token_can_open_the_join_tunnel(lab: RecordingLab):
    """The positive control for the test above: the same probe works with a valid key."""
    data = lab.cli_json("node", "add", "--ip", "192.0.2.77", "--name", "live-probe")
    token = wire.decode_join_token(data["join_token"])
    assert handshakes(lab, "1", token["wg_private_key"], token["wg_public_key"])
    lab.cli_json("node", "delete", data["node"]["id"])


def test_an_expired_tokens_peer_leaves_the_control_plane(lab: RecordingLab):
    from nimbus.compat import tomllib
    from nimbus.config import ServerConfig, dump_toml
    from nimbus.store.files import write_private

    cfg_path = lab.member_dir("cp") / "api.toml"
    settings = tomllib.loads(cfg_path.read_text())
    settings["join_token_ttl_sec"] = TOKEN_TTL
    write_private(cfg_path, dump_toml(ServerConfig(**settings).validate()))
    lab.restart("cp")
    data = lab.cli_json("node", "add", "--ip", "192.0.2.78", "--name", "expiring")
    from nimbus.security.wgkeys import public_key

    key = public_key(wire.decode_join_token(data["join_token"])["wg_private_key"])
    assert key in cp_peers(lab)
    deadline = time.monotonic() + TOKEN_TTL + 15
    while key in cp_peers(lab) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert key not in cp_peers(lab), "expired pending node still a control-plane peer"
    token = wire.decode_join_token(data["join_token"])
    assert not handshakes(lab, "1", token["wg_private_key"], token["wg_public_key"])
