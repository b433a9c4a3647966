"""Join tokens: single use under concurrency, one answer for every refusal, exact expiry."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from nimbus.client import ApiClient
from nimbus.config import ServerConfig
from nimbus.errors import Unauthorized, Unavailable
from nimbus.security.pki import make_csr
from nimbus.server import enroll, nodes
from nimbus.server.boot import open_state
from tests.security.helpers import add_node, join, join_body, raw, store_doc


def test_fifty_parallel_joins_with_one_token_join_exactly_one_node(server, ops, tmp_path):
    node, fields, _ = add_node(ops)
    # Fifty different keys (fifty machines racing for one token); the same key again would
    # be a retry of one join, answered with the same certificate (test below).
    payloads = [json.dumps(join_body(fields)).encode() for _ in range(50)]

    def attempt(i: int) -> tuple[int, bytes]:
        status, _, body = raw(server, "POST", "/v1/nodes/join", payloads[i],
                              {"Content-Type": "application/json"})
        return status, body

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(attempt, range(50)))
    ok = [body for status, body in results if status == 200]
    refused = [body for status, body in results if status != 200]
    assert len(ok) == 1, [s for s, _ in results]
    assert len(refused) == 49
    assert {s for s, _ in results if s != 200} == {401}
    assert len(set(refused)) == 1  # byte-identical refusals
    stored = store_doc(server, "nodes")[node["id"]]
    assert stored["state"] == "active"
    assert stored["join"]["used"] is True
    assert len(stored["cert_serials"]) == 1  # one certificate issued, not 50
    assert json.loads(ok[0])["data"]["cert_pem"].count("BEGIN CERTIFICATE") == 1
    joins = [e for e in server_audit(server) if e["event"] == "join.ok"]
    assert len(joins) == 1


def server_audit(server):
    path = server.data_dir / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_used_expired_unknown_and_wrong_secret_tokens_get_identical_answers(
        server_factory, cli, tmp_path):
    from tests.harness import bootstrap_admin
    from tests.security.helpers import operator

    # Every refusal on its own audit line (no aggregation), so all reasons can be checked.
    server = server_factory({"join_token_ttl_sec": 3, "audit_aggregate_sec": 0})
    ops = operator(server, bootstrap_admin(server, cli))
    _, used, _ = add_node(ops, name="used")
    join(server, used, tmp_path / "n")
    _, expired, _ = add_node(ops, name="expired")
    _, wrong, _ = add_node(ops, name="wrong")
    time.sleep(4.2)  # the 3 s TTL of "expired" (and "wrong") runs out
    unknown = {**wrong, "node_id": "node-0123456789abcdef"}
    wrong_secret = {**wrong, "secret": wrong["secret"][:-2] + "xx"}
    answers = {}
    for label, fields in (("used", used), ("expired", expired), ("unknown", unknown),
                          ("wrong secret", wrong_secret)):
        status, headers, body = raw(server, "POST", "/v1/nodes/join",
                                    json.dumps(join_body(fields)).encode(),
                                    {"Content-Type": "application/json"})
        answers[label] = (status, headers.get("content-type"), body)
    assert len(set(answers.values())) == 1, answers
    status, _, body = answers["used"]
    assert status == 401
    assert b"invalid, expired or already used" in body
    reasons = {e["reason"] for e in server_audit(server) if e["event"] == "join.refused"}
    assert reasons == {"token already used", "token expired", "unknown node or wrong secret"}


@pytest.fixture
def fake_state(tmp_path):
    now = [1_800_000_000.0]
    config = ServerConfig(data_dir=str(tmp_path / "data"), wireguard=False,
                          join_token_ttl_sec=600).validate()
    state = open_state(config, clock=lambda: now[0])
    return state, now


@pytest.mark.parametrize(("offset", "accepted"), [(-1, True), (0, True), (1, False),
                                                  (3600, False)])
def test_join_token_expiry_boundary_with_a_controlled_clock(fake_state, offset, accepted):
    state, now = fake_state
    created = nodes.create(state, "192.0.2.5", None, actor="test")
    from nimbus import wire

    fields = wire.decode_join_token(created["join_token"])
    assert fields["expires_at"] == int(now[0]) + 600
    now[0] = fields["expires_at"] + offset
    body = join_body(fields)
    if accepted:
        assert enroll.join(state, body, "192.0.2.5")[0]["node"]["id"] == fields["node_id"]
    else:
        with pytest.raises(Unauthorized):
            enroll.join(state, body, "192.0.2.5")
        assert state.store.read("nodes")[fields["node_id"]]["state"] == "pending"


def test_a_retried_join_gets_the_same_certificate_and_nothing_else_does(fake_state):
    """The join's answer was lost: the agent retries with the same CSR and WireGuard key."""
    state, now = fake_state
    created = nodes.create(state, "192.0.2.5", None, actor="test")
    from nimbus import wire

    fields = wire.decode_join_token(created["join_token"])
    body = join_body(fields)
    first, _ = enroll.join(state, body, "192.0.2.5")
    now[0] += 30
    again, _ = enroll.join(state, dict(body), "192.0.2.5")
    assert again["cert_pem"] == first["cert_pem"]
    assert again["node"]["id"] == fields["node_id"]
    stored = state.store.read("nodes")[fields["node_id"]]
    assert len(stored["cert_serials"]) == 1  # no second certificate
    for changed in ({"csr": make_csr(fields["node_id"])[0]},  # another key: a thief
                    {"wireguard_public_key": join_body(fields)["wireguard_public_key"]}):
        with pytest.raises(Unauthorized):
            enroll.join(state, {**body, **changed}, "192.0.2.5")
    events = [e["event"] for e in state.audit.read()]
    assert events.count("join.ok") == 1 and events.count("join.retried") == 1
    # Past the token's lifetime the same request is refused like any used token.
    now[0] = fields["expires_at"] + 1
    with pytest.raises(Unauthorized):
        enroll.join(state, dict(body), "192.0.2.5")


def test_a_join_retry_is_refused_once_the_node_used_its_certificate(fake_state):
    state, _now = fake_state
    created = nodes.create(state, "192.0.2.6", None, actor="test")
    from nimbus import wire

    fields = wire.decode_join_token(created["join_token"])
    body = join_body(fields)
    enroll.join(state, body, "192.0.2.6")
    nodes.heard(state, fields["node_id"], {}, {}, None)  # its first heartbeat over mTLS
    with pytest.raises(Unauthorized):  # refused at once, before the store is written
        enroll.join(state, dict(body), "192.0.2.6")
    state.runtime.flush()  # the kept certificate leaves the store in the batched flush
    assert "cert_pem" not in state.store.read("nodes")[fields["node_id"]]["join"]
    with pytest.raises(Unauthorized):
        enroll.join(state, dict(body), "192.0.2.6")


def test_client_refuses_a_control_plane_that_does_not_chain_to_the_token_ca(
        server_factory, cli, tmp_path):
    from tests.harness import bootstrap_admin
    from tests.security.helpers import operator

    first = server_factory(name="first")
    second = server_factory(name="second")
    ops = operator(first, bootstrap_admin(first, cli))
    _, fields, _ = add_node(ops)
    assert fields["ca_pem"] == first.ca_pem() != second.ca_pem()
    impostor = ApiClient(second.url, fields["ca_pem"])  # what an agent builds from the token
    with pytest.raises(Unavailable, match="TLS verification"):
        impostor.request("POST", "/v1/nodes/join", join_body(fields))
    time.sleep(0.2)
    # The secret never reached the second server: no join of any kind was seen there.
    audit = second.data_dir / "audit.log"
    events = audit.read_text() if audit.exists() else ""
    assert "join" not in events
    assert fields["secret"] not in second.log()
    assert "/v1/nodes/join" not in second.log()
    # ...and the token still works against the genuine control plane.
    assert join(first, fields, tmp_path / "n").node_id == fields["node_id"]


def test_join_token_carries_the_ca_and_no_server_side_secret(server, ops):
    _, fields, token = add_node(ops)
    decoded = json.loads(base64.urlsafe_b64decode(token.split(".", 1)[1] + "=="))
    assert decoded["ca_pem"] == server.ca_pem()
    assert "ca_key" not in token and "PRIVATE KEY" not in decoded["ca_pem"]
    stored = store_doc(server, "nodes")[fields["node_id"]]
    assert fields["secret"] not in json.dumps(stored)


