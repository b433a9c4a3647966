"""`nimbus node …` as an operator types it: no redundant flags, names, fresh tokens."""

from __future__ import annotations

from nimbus import wire


def test_node_add_prints_the_token_without_get_token(server, cli, admin):
    plain = cli.run("node", "add", "--ip", "192.0.2.30", "--name", "plain")
    token = plain.stdout.strip()
    assert wire.decode_join_token(token)["node_id"].startswith("node-")
    assert "nimbus agent --join" in plain.stderr
    # The old spelling keeps working.
    old = cli.json("node", "add", "--get-token", "--ip", "192.0.2.31", "--name", "old")
    assert old["join_token"].startswith(wire.JOIN_TOKEN_PREFIX)


def test_a_spent_token_says_how_to_get_a_new_one(server_factory, cli, agents, tmp_path):
    from tests.integration.agents import add_node, control_plane, node_status, wait_for

    control_plane(server_factory, cli)
    node_id, token = add_node(cli)
    agents.join(token)
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready")
    (tmp_path / "none.toml").write_text("")
    again = cli.run("agent", "--join", "--token-file", "-", "--no-wireguard", "--data-dir",
                    str(tmp_path / "other-data"), "--config", str(tmp_path / "none.toml"),
                    input=token, check=False, env={"HOME": str(tmp_path)})
    assert again.returncode == 3, again.stderr
    last = again.stderr.strip().splitlines()[-1]  # after the agent's own log lines
    assert last.startswith("error: join token is invalid") and "Traceback" not in again.stderr
    assert last.endswith(f"ask for a new one with `nimbus node token {node_id}`")
