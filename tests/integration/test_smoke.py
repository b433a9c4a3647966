"""The control plane starts, bootstraps, and answers the CLI."""

from __future__ import annotations


def test_bootstrap_then_node_list_is_empty(server, cli, admin):
    assert admin["api_url"] == server.url
    assert cli.json("node", "list") == []
    users = cli.json("iam", "list-users")
    assert [u["username"] for u in users] == ["admin"]
