"""Join material stops being useful (issue 9 item 6): the control plane's side, no root.

The real WireGuard half (wg show, handshakes, the agent switching keys) is
tests/e2e/test_join_keys.py.
"""

from __future__ import annotations

import json

import pytest

from nimbus import wire
from nimbus.config import ServerConfig
from nimbus.errors import BadRequest
from nimbus.security.pki import make_csr
from nimbus.security.wgkeys import generate_keypair, public_key
from nimbus.server import enroll, joinkeys, mesh, nodes
from nimbus.server.boot import open_state
from tests.security.helpers import add_node, join_body, store_doc


@pytest.fixture
def clocked(tmp_path):
    now = [1_800_000_000.0]
    config = ServerConfig(data_dir=str(tmp_path / "data"), wireguard=False,
                          join_token_ttl_sec=600).validate()
    return open_state(config, clock=lambda: now[0]), now


def _cp_keys(state):
    return {p["public_key"] for p in mesh.peers_for(state, None)}


def _pending(state, ip="192.0.2.5"):
    created = nodes.create(state, ip, None, actor="test")
    fields = wire.decode_join_token(created["join_token"])
    return fields, public_key(fields["wg_private_key"])


def test_an_expired_pending_node_is_no_control_plane_peer(clocked):
    state, now = clocked
    fields, token_key = _pending(state)
    assert token_key in _cp_keys(state)
    now[0] = fields["expires_at"]
    assert token_key in _cp_keys(state)
    now[0] = fields["expires_at"] + 1
    assert token_key not in _cp_keys(state)  # before: a peer forever
    assert joinkeys.next_change(state.store.read("nodes"), now[0]) is None


def test_the_node_key_replaces_the_token_key_once_the_answer_is_sent(clocked):
    state, _now = clocked
    fields, token_key = _pending(state)
    other, _ = _pending(state, "192.0.2.6")
    enroll.join(state, join_body(other), "192.0.2.6")
    own = generate_keypair()[1]
    answer, after_sent = enroll.join(state, join_body(fields, wireguard_public_key=own),
                                     "192.0.2.5")
    assert answer["node"]["wireguard_public_key"] == own
    # The answer still travels through the tunnel the token's key opened ...
    assert token_key in _cp_keys(state) and own not in _cp_keys(state)
    # ... every other node already gets the node's own key ...
    assert own in {p["public_key"] for p in mesh.peers_for(state, other["node_id"])}
    after_sent()
    # ... and once it is sent, the control plane has the node's key only.
    assert own in _cp_keys(state) and token_key not in _cp_keys(state)
    assert "handover_key" not in state.store.read("nodes")[fields["node_id"]]["join"]


def test_the_handover_ends_by_itself_if_the_answer_step_never_runs(clocked):
    state, now = clocked
    fields, _token_key = _pending(state)
    own = generate_keypair()[1]
    enroll.join(state, join_body(fields, wireguard_public_key=own), "192.0.2.5")
    assert joinkeys.next_change(state.store.read("nodes"), now[0]) == \
        pytest.approx(now[0] + joinkeys.HANDOVER_SEC, abs=0.01)
    now[0] += joinkeys.HANDOVER_SEC + 0.01
    assert _cp_keys(state) == {own}


def test_a_join_must_bring_a_new_key(clocked):
    state, _ = clocked
    fields, token_key = _pending(state)
    with pytest.raises(BadRequest, match="new key"):
        enroll.join(state, join_body(fields, wireguard_public_key=token_key), "192.0.2.5")
    assert state.store.read("nodes")[fields["node_id"]]["state"] == "pending"


def test_the_join_api_requires_a_wellformed_node_key(server, ops):
    _, fields, _ = add_node(ops)
    from tests.security.helpers import raw

    for key in (None, "", "x" * 44, "not base64!", public_key(fields["wg_private_key"]) + "A"):
        body = join_body(fields, make_csr(fields["node_id"])[0])
        if key is None:
            body.pop("wireguard_public_key")
        else:
            body["wireguard_public_key"] = key


        status, _, reply = raw(server, "POST", "/v1/nodes/join", json.dumps(body).encode(),
                               {"Content-Type": "application/json"})
        assert status == 400, (key, reply)
    assert store_doc(server, "nodes")[fields["node_id"]]["state"] == "pending"
