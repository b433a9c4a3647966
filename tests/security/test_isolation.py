"""Node isolation: every internal endpoint, called by node A about itself and about node B."""

from __future__ import annotations

import json

import pytest

from nimbus.errors import BadRequest, Forbidden, NotFound
from nimbus.security.pki import make_csr
from nimbus.server.openapi import document
from tests.security.helpers import add_node, join, store_doc

# Every mTLS endpoint; the test below fails when a new one appears without a row here.
INTERNAL = {"/v1/internal/heartbeat", "/v1/internal/tasks/{node_id}",
            "/v1/internal/tasks/{task_id}/result", "/v1/internal/renew"}


@pytest.fixture
def two_nodes(server, ops, tmp_path):
    joined = []
    for i, name in enumerate(("a", "b", "c")):
        _, fields, _ = add_node(ops, ip=f"192.0.2.{20 + i}", name=name)
        joined.append(join(server, fields, tmp_path / name))
    a, b, _ = joined  # c joining queued a peer update for both a and b
    return a, b


def _pending(server, node_id):
    return {k: v for k, v in store_doc(server, "tasks").items()
            if v["node_id"] == node_id and v["status"] == "pending"}


def test_internal_endpoint_list_is_complete():
    assert {p for p in document()["paths"] if p.startswith("/v1/internal/")} == INTERNAL


def test_node_a_can_read_or_change_nothing_of_node_b(server, ops, two_nodes):
    a, b = two_nodes
    ca = a.client(server)
    b_tasks = _pending(server, b.node_id)
    assert b_tasks, "node b should have a queued peer update"
    b_task_id = next(iter(b_tasks))
    nodes_before = store_doc(server, "nodes")
    b_before = ops.request("GET", f"/v1/nodes/{b.node_id}")

    # heartbeat (own): changes only a, even when it reports a new IP and hostname
    ca.request("POST", "/v1/internal/heartbeat",
               {"ip_address": "198.51.100.7", "hostname": "renamed", "cpu": {"usage": 0.5}})
    # heartbeat (other): there is no way to name another node
    with pytest.raises(BadRequest):
        ca.request("POST", "/v1/internal/heartbeat", {"node_id": b.node_id})
    nodes_after = store_doc(server, "nodes")
    assert nodes_after[b.node_id] == nodes_before[b.node_id]
    assert nodes_after[a.node_id]["ip_address"] == "198.51.100.7"
    b_after = ops.request("GET", f"/v1/nodes/{b.node_id}")
    assert b_after["cpu"] == b_before["cpu"] and b_after["hostname"] == "host-1"

    # tasks (own) allowed; tasks (other) 403 and nothing delivered
    assert isinstance(ca.request("GET", f"/v1/internal/tasks/{a.node_id}"), list)
    with pytest.raises(Forbidden):
        ca.request("GET", f"/v1/internal/tasks/{b.node_id}")
    with pytest.raises(Forbidden):
        ca.request("GET", f"/v1/internal/tasks/{b.node_id}?wait=1")
    assert _pending(server, b.node_id) == b_tasks

    # result (other's task) 404, task unchanged
    tasks_before = store_doc(server, "tasks")
    with pytest.raises(NotFound):
        ca.request("POST", f"/v1/internal/tasks/{b_task_id}/result",
                   {"status": "failed", "output": "spoofed"})
    assert store_doc(server, "tasks")[b_task_id] == tasks_before[b_task_id]
    # result (own task) works
    own = ops.request("GET", f"/v1/nodes/{a.node_id}")["tasks"]
    if own:
        ca.request("POST", f"/v1/internal/tasks/{own[-1]['id']}/result", {"status": "succeeded"})

    # renew (own): the certificate names a, whatever the CSR asks for; there is no "other"
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = ca.request("POST", "/v1/internal/renew", {"csr": make_csr(b.node_id)[0]})["cert_pem"]
    cn = x509.load_pem_x509_certificate(cert.encode()).subject.get_attributes_for_oid(
        NameOID.COMMON_NAME)[0].value
    assert cn == a.node_id
    with pytest.raises(BadRequest):
        ca.request("POST", "/v1/internal/renew", {"csr": make_csr(b.node_id)[0],
                                                  "node_id": b.node_id})
    final = store_doc(server, "nodes")[b.node_id]
    assert json.dumps(final, sort_keys=True) == json.dumps(nodes_before[b.node_id],
                                                           sort_keys=True)
