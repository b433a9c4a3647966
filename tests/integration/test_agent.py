"""The running agent: reconnects, restarts, renews its certificate and reports task results."""

from __future__ import annotations

import shutil
import subprocess
import time

from nimbus.security.pki import cert_info
from tests.integration.agents import (
    add_node,
    control_plane,
    join_direct,
    node_status,
    wait_for,
)


def _seen_after(cli, node_id, since):
    node = cli.json("node", "describe", node_id)
    return node["status"] == "ready" and (node["last_seen"] or 0) > since


def _connections(pid):
    out = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True,
                         text=True, check=False).stdout
    return sorted(line.split()[2] for line in out.splitlines() if f"pid={pid}," in line)


def test_agent_reconnects_after_server_crash_and_resumes_after_restart(
        server_factory, cli, agents):
    server = control_plane(server_factory, cli)
    node_id, token = add_node(cli)
    agent = agents.join(token)
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready")
    if shutil.which("ss"):
        # One kept-alive connection per thread: the same sockets across several heartbeats.
        first = wait_for(lambda: _connections(agent.proc.pid), "agent connections")
        since = time.time()
        wait_for(lambda: _seen_after(cli, node_id, since + 2), "three more heartbeats")
        assert _connections(agent.proc.pid) == first and len(first) == 2

    server.kill()  # kill -9: no goodbye to the agent
    wait_for(lambda: "heartbeat failed" in agent.log(), "agent noticing the outage")
    server.start()
    restarted = time.time()
    wait_for(lambda: _seen_after(cli, node_id, restarted), "heartbeat after server restart")
    assert agent.alive()

    assert agent.stop() == 0
    assert "Traceback" not in agent.log()
    stopped = time.time()
    agent.start()  # no token: resumes from the saved credentials
    wait_for(lambda: _seen_after(cli, node_id, stopped), "heartbeat after agent restart")
    assert agent.log().count("running for " + node_id) == 2
    assert agent.stop() == 0


def test_certificate_is_renewed_without_downtime(server_factory, cli, agents):
    control_plane(server_factory, cli, node_cert_lifetime_sec=30)
    node_id, token = add_node(cli)
    agent = agents.join(token)
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready")
    cert = agent.data_dir / "client.crt"
    first = cert_info(cert.read_text())

    def renewed():
        assert node_status(cli, node_id) == "ready"  # no gap while renewing
        return cert_info(cert.read_text()).serial != first.serial

    wait_for(renewed, "certificate renewal", timeout=60, every=1)
    second = cert_info(cert.read_text())
    assert second.common_name == node_id and second.not_after > first.not_after
    assert (agent.data_dir / "client.key").stat().st_mode & 0o777 == 0o600
    assert not (agent.data_dir / "client.key.next").exists()
    since = time.time()
    wait_for(lambda: _seen_after(cli, node_id, since), "heartbeat with the new certificate")
    assert "certificate renewed" in agent.log()


def test_task_result_shows_in_node_describe(server_factory, cli, agents, tmp_path):
    server = control_plane(server_factory, cli)
    node_id, token = add_node(cli, "192.0.2.31", "agent-node")
    agents.join(token)
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready")

    def finished(count):
        tasks = cli.json("node", "describe", node_id)["tasks"]
        done = [t for t in tasks if t["status"] in ("succeeded", "failed")]
        return done if len(done) >= count else None

    # Another node joining, then moving, each sends this node its new peer list.
    other_id, other_token = add_node(cli, "192.0.2.32", "other-node")
    join_direct(server, other_token, tmp_path / "other")
    wait_for(lambda: finished(1), "first update_wireguard_peers result")
    cli.run("node", "update-ip", other_id, "--ip", "192.0.2.33")
    done = wait_for(lambda: finished(2), "update-ip's update_wireguard_peers result")
    for task in done:
        assert task["type"] == "update_wireguard_peers"
        assert task["status"] == "succeeded"
        assert "WireGuard is disabled" in task["output"] and "2 peers" in task["output"]
    table = cli.run("node", "describe", node_id).stdout
    assert "update_wireguard_peers" in table and "succeeded" in table
