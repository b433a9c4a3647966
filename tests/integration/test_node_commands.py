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
