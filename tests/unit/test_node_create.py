"""Node creation refuses to hand out tokens that point nodes at an unusable endpoint."""

from __future__ import annotations

import pytest

from nimbus.config import ServerConfig
from nimbus.errors import Conflict
from nimbus.server import nodes
from nimbus.server.boot import open_state
from nimbus.wire import decode_join_token


def test_wireguard_mode_without_public_address_refuses_node_creation(tmp_path):
    state = open_state(ServerConfig(data_dir=str(tmp_path), wireguard=True).validate())
    with pytest.raises(Conflict, match="public_address"):
        nodes.create(state, "192.0.2.10", "n1", actor="test")
    assert state.store.read("nodes") == {}


def test_token_points_at_the_public_address_and_overlay_api(tmp_path):
    config = ServerConfig(data_dir=str(tmp_path), wireguard=True, public_address="192.0.2.1")
    state = open_state(config.validate())
    token = decode_join_token(nodes.create(state, "192.0.2.10", "n1", actor="test")["join_token"])
    assert token["wg_endpoint"] == "192.0.2.1:51820"
    assert token["api_url"] == "https://10.106.103.1:8443"
    assert token["wg_ip"] == "10.106.103.2"
