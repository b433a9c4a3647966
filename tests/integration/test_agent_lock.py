"""One agent per data dir: a second `nimbus agent` on the same dir stops with one line."""

from __future__ import annotations

import subprocess

from tests.harness import base_env, nimbus_argv
from tests.integration.agents import add_node, control_plane, node_status, wait_for


def _second_agent(agent) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*nimbus_argv(), "agent", "--config", str(agent.settings),
                           "--data-dir", str(agent.data_dir), "--no-wireguard"],
                          capture_output=True, text=True, env=base_env(agent.dir), timeout=60,
                          check=False)


def test_a_second_agent_on_the_same_data_dir_exits_with_one_line(server_factory, cli, agents):
    control_plane(server_factory, cli)
    node_id, token = add_node(cli)
    agent = agents.join(token)
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready")

    second = _second_agent(agent)
    assert second.returncode == 5, second.stderr
    assert second.stderr.count("\n") == 1, second.stderr
    assert f"pid {agent.proc.pid}" in second.stderr and str(agent.data_dir) in second.stderr
    assert agent.alive()

    # kill -9 releases the lock with the process: the next agent starts normally.
    agent.proc.kill()
    agent.proc.wait()
    agent.start()
    wait_for(lambda: agent.log().count("running for " + node_id) == 2, "restarted agent")
    assert agent.alive()


def test_joining_into_a_data_dir_in_use_is_refused_before_the_token_is_spent(
        server_factory, cli, agents):
    control_plane(server_factory, cli)
    node_id, token = add_node(cli)
    agent = agents.join(token)
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready")
    _, other_token = add_node(cli, ip="192.0.2.11", name="other")
    again = subprocess.run([*nimbus_argv(), "agent", "--join", "--token-file", "-",
                            "--config", str(agent.settings), "--data-dir", str(agent.data_dir),
                            "--no-wireguard"], input=other_token, capture_output=True,
                           text=True, env=base_env(agent.dir), timeout=60, check=False)
    assert again.returncode == 5 and "already runs" in again.stderr, again.stderr
    assert "other" in {n["name"] for n in cli.json("node", "list")
                       if n["status"] == "pending"}
