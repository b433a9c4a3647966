"""mTLS rules: foreign CAs, CN/path mismatches, operator endpoints, revocation on delete."""

from __future__ import annotations

import time

import pytest

from nimbus.errors import NimbusError, Unauthorized, Unavailable
from tests.integration.agents import (
    add_node,
    control_plane,
    join_direct,
    node_client,
    node_status,
    wait_for,
)


def test_foreign_ca_certificate_with_the_right_common_name_is_refused(
        server_factory, cli, tmp_path):
    from nimbus.security import pki

    server = control_plane(server_factory, cli)
    node_id, token = add_node(cli)
    join_direct(server, token, tmp_path / "real")
    before = cli.json("node", "describe", node_id)["last_seen"]

    ca_pem, ca_key = pki.create_ca(time.time(), name="Nimbus CA")  # same name, other key
    csr, key = pki.make_csr(node_id)
    cert, _, _ = pki.sign_client_csr(ca_pem, ca_key, csr, node_id, 3600, time.time())
    (tmp_path / "forged.crt").write_text(cert)
    (tmp_path / "forged.key").write_text(key)
    client = node_client(server, tmp_path / "forged.crt", tmp_path / "forged.key")
    for method, path, body in (("POST", "/v1/internal/heartbeat", {"hostname": "evil"}),
                               ("GET", f"/v1/internal/tasks/{node_id}", None)):
        with pytest.raises((Unauthorized, Unavailable)):
            client.request(method, path, body)
        client.close()
    node = cli.json("node", "describe", node_id)
    assert node["last_seen"] == before and node["hostname"] == "test-host"


def test_a_node_cannot_fetch_another_nodes_tasks(server_factory, cli, tmp_path):
    server = control_plane(server_factory, cli)
    a_id, a_token = add_node(cli, "192.0.2.21")
    b_id, b_token = add_node(cli, "192.0.2.22")
    a = node_client(server, *join_direct(server, a_token, tmp_path / "a")[1:])
    b = node_client(server, *join_direct(server, b_token, tmp_path / "b")[1:])
    # B's join queued update_wireguard_peers for A.
    assert [t["status"] for t in cli.json("node", "describe", a_id)["tasks"]] == ["pending"]

    status, _, body = b.raw("GET", f"/v1/internal/tasks/{a_id}?wait=0")
    assert status == 403, body
    assert [t["status"] for t in cli.json("node", "describe", a_id)["tasks"]] == ["pending"]
    mine = a.request("GET", f"/v1/internal/tasks/{a_id}?wait=0")
    assert [t["type"] for t in mine] == ["update_wireguard_peers"]
    assert b.request("GET", f"/v1/internal/tasks/{b_id}?wait=0") == []
    # A result for another node's task is refused too.
    status, _, _ = b.raw("POST", f"/v1/internal/tasks/{mine[0]['id']}/result",
                         {"status": "succeeded", "output": "not mine"})
    assert status in (403, 404)
    assert cli.json("node", "describe", a_id)["tasks"][0]["status"] == "delivered"


def test_node_certificate_is_refused_on_operator_endpoints(server_factory, cli, tmp_path):
    server = control_plane(server_factory, cli)
    node_id, token = add_node(cli)
    client = node_client(server, *join_direct(server, token, tmp_path / "n")[1:])
    for method, path, body in (("GET", "/v1/nodes", None),
                               ("POST", "/v1/nodes", {"ip_address": "192.0.2.99"}),
                               ("DELETE", f"/v1/nodes/{node_id}", None),
                               ("GET", "/v1/iam/users", None)):
        status, _, data = client.raw(method, path, body)
        assert status == 401, (method, path, data)
    assert [n["id"] for n in cli.json("node", "list")] == [node_id]


def test_deleted_node_is_refused_on_its_very_next_request(server_factory, cli, tmp_path):
    from nimbus.security.pki import make_csr

    server = control_plane(server_factory, cli)
    node_id, token = add_node(cli)
    client = node_client(server, *join_direct(server, token, tmp_path / "n")[1:])
    client.request("POST", "/v1/internal/heartbeat", {"agent_version": "0.1.0"})
    cli.run("node", "delete", node_id)
    # The same kept-alive TLS connection: revocation is checked per request.
    with pytest.raises(Unauthorized):
        client.request("POST", "/v1/internal/heartbeat", {"agent_version": "0.1.0"})
    with pytest.raises(Unauthorized):
        client.request("POST", "/v1/internal/renew", {"csr": make_csr(node_id)[0]})
    with pytest.raises(NimbusError):
        client.request("GET", f"/v1/internal/tasks/{node_id}?wait=0")


def test_agent_of_a_deleted_node_says_so_once_and_waits_quietly(
        server_factory, cli, agents):
    control_plane(server_factory, cli)
    node_id, token = add_node(cli)
    agent = agents.join(token)
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready")
    cli.run("node", "delete", node_id)
    wait_for(lambda: "this node was removed from the control plane" in agent.log(),
             "removal logged")
    time.sleep(4)  # heartbeats every second: a noisy agent would have logged again by now
    log = agent.log()
    assert log.count("this node was removed") == 1, log
    assert "certificate has been revoked" in log and "fresh data dir" in log
    after = log.split("this node was removed", 1)[1]
    assert "WARNING" not in after and "ERROR" not in after, after
    assert agent.alive(), agent.log()
    assert agent.stop() == 0
    assert "Traceback" not in agent.log()
