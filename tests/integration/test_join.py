"""Node join: the agent enrolls with a token; bad, reused and raced tokens are refused."""

from __future__ import annotations

import threading
import time

from nimbus import wire
from tests.integration.agents import (
    add_node,
    control_plane,
    join_body,
    join_direct,
    node_status,
    post_join,
    wait_for,
)


def _pem_body(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


def test_agent_joins_and_node_becomes_ready(server_factory, cli, agents):
    server = control_plane(server_factory, cli)
    node_id, token = add_node(cli, "192.0.2.10", "web-1")
    agent = agents.join(token)
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready", timeout=30)
    node = wait_for(lambda: (n := cli.json("node", "describe", node_id))["cpu"] and n,
                    "first heartbeat metrics")
    assert node["agent_version"] and node["arch"] and node["hostname"]
    assert 0 <= node["cpu"]["usage"] <= 1 and node["memory"]["total"] > 0
    assert node["disk"]["total"] >= node["disk"]["used"] > 0

    data = agent.data_dir
    assert data.stat().st_mode & 0o777 == 0o700
    for name in ("ca.crt", "client.crt", "client.key", "agent.toml", "state.json"):
        assert (data / name).stat().st_mode & 0o777 == 0o600, name
    saved = (data / "agent.toml").read_text()
    assert node_id in saved and server.url in saved and "wireguard = false" in saved

    # SECURITY: the node's private key never left the node.
    key_body = _pem_body((data / "client.key").read_text())
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert key_body.encode() not in content, path
    # ... and no secret reached the logs.
    fields = wire.decode_join_token(token)
    for text in (agent.log(), server.log()):
        for secret in (fields["secret"], fields["wg_private_key"], key_body[:40], token[20:80]):
            assert secret not in text


def test_refused_tokens_all_get_the_identical_answer(server_factory, cli):
    server = control_plane(server_factory, cli, join_token_ttl_sec=3)
    used_id, used = add_node(cli, "192.0.2.11")
    forged = post_join(server, join_body(used, secret="x" * 43)[0])
    join_direct(server, used, server.tmp / "first")  # the forgery did not burn the token
    reused = post_join(server, join_body(used)[0])
    unknown = post_join(server, join_body(used, node_id="node-0123456789abcdef")[0])

    expired_id, expired_token = add_node(cli, "192.0.2.12")
    expires_at = wire.decode_join_token(expired_token)["expires_at"]
    time.sleep(max(0.0, expires_at - time.time()) + 1.2)
    expired = post_join(server, join_body(expired_token)[0])

    assert forged[0] == 401
    assert forged == reused == unknown == expired
    assert node_status(cli, expired_id) == "pending"
    assert node_status(cli, used_id) not in (None, "pending")


def test_concurrent_joins_with_one_token_make_exactly_one_node(server_factory, cli):
    server = control_plane(server_factory, cli)
    node_id, token = add_node(cli, "192.0.2.13")
    bodies = [join_body(token)[0] for _ in range(8)]
    assert len({b["csr"] for b in bodies}) == 8
    results: list[tuple[int, bytes]] = []
    barrier = threading.Barrier(len(bodies))

    def attempt(body):
        barrier.wait()
        results.append(post_join(server, body))

    threads = [threading.Thread(target=attempt, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [401] * 7
    nodes = cli.json("node", "list")
    assert [n["id"] for n in nodes] == [node_id]
    assert nodes[0]["status"] != "pending"


def test_join_refuses_a_server_with_another_ca_before_sending_the_secret(
        server_factory, cli, agents):
    control_plane(server_factory, cli)
    impostor = server_factory(name="impostor")
    node_id, token = add_node(cli, "192.0.2.14")

    agent = agents.new("fooled").start(token, "--api-url", impostor.url)
    assert agent.wait(timeout=60) != 0
    assert "TLS verification" in agent.log()
    assert "Traceback" not in agent.log()
    assert not (agent.data_dir / "client.key").exists()
    audit = impostor.data_dir / "audit.log"
    assert '"join.' not in (audit.read_text() if audit.exists() else "")

    # The token was never presented anywhere, so it still works against the real server.
    assert node_status(cli, node_id) == "pending"
    agents.join(token, "real")
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready")


def test_agent_without_credentials_or_with_a_bad_token_fails_clearly(tmp_path, agents):
    agent = agents.new("fresh").start()
    assert agent.wait(timeout=60) == 6
    assert "has not joined yet" in agent.log()
    bad = agents.new("bad").start("nimbus-join-v1.bm90LWpzb24")
    assert bad.wait(timeout=60) != 0
    assert "join token is corrupted" in bad.log() and "Traceback" not in bad.log()
