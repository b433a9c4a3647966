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


def test_a_fresh_token_replaces_the_old_one(server_factory, cli, agents, tmp_path):
    from tests.integration.agents import control_plane, node_status, wait_for

    control_plane(server_factory, cli)
    old = cli.run("node", "add", "--ip", "192.0.2.40", "--name", "pi1").stdout.strip()
    fresh = cli.run("node", "token", "pi1")  # by name
    new = fresh.stdout.strip()
    assert new != old and "pi1" in fresh.stderr
    node_id = wire.decode_join_token(new)["node_id"]
    assert wire.decode_join_token(old)["node_id"] == node_id
    # The old token no longer works (nothing is spent by trying it) ...
    (tmp_path / "none.toml").write_text("")
    refused = cli.run("agent", "--join", "--token-file", "-", "--no-wireguard", "--data-dir",
                      str(tmp_path / "old-data"), "--config", str(tmp_path / "none.toml"),
                      input=old, check=False, env={"HOME": str(tmp_path)})
    assert refused.returncode == 3 and "nimbus node token" in refused.stderr
    # ... the new one does.
    agents.join(new)
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready with the new token")
    joined = cli.run("node", "token", node_id, check=False)
    assert joined.returncode == 5 and "already joined" in joined.stderr
    assert joined.stderr.count("\n") == 1


def test_names_work_everywhere_a_node_is_named_and_undrain(server_factory, cli, agents):
    from tests.integration.agents import control_plane, node_status, wait_for

    control_plane(server_factory, cli)
    token = cli.run("node", "add", "--ip", "192.0.2.50", "--name", "web1").stdout.strip()
    node_id = wire.decode_join_token(token)["node_id"]
    agents.join(token)
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready")
    assert cli.json("node", "describe", "web1")["id"] == node_id
    assert cli.json("node", "drain", "web1")["status"] == "draining"
    again = cli.run("node", "undrain", "web1", check=False)
    assert again.returncode == 0, again.stderr
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready after undrain")
    twice = cli.run("node", "undrain", "web1", check=False)
    assert twice.returncode == 5 and "not draining" in twice.stderr
    assert cli.json("node", "update-ip", "web1", "--ip", "192.0.2.51")["ip_address"] == \
        "192.0.2.51"
    unknown = cli.run("node", "describe", "no-such-node", check=False)
    assert unknown.returncode == 4 and unknown.stderr.count("\n") == 1
    bad = cli.run("node", "describe", "bad name!", check=False)
    assert bad.returncode == 1 and "invalid node id or name" in bad.stderr
    cli.run("node", "delete", "web1")
    assert cli.json("node", "list") == []
