"""Shell completion through the real binary against a real server: click's protocol under the
name `nimbus`, NODE and SWARM from the API, nothing at all when the API does not answer."""

from __future__ import annotations


def _complete(cli, words: str, kind: str = "bash", **env: str):
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    return cli.run(check=False, env={"_NIMBUS_COMPLETE": f"{kind}_complete",
                                     "COMP_WORDS": words, "COMP_CWORD": str(cword), **env})


def test_commands_complete_whatever_the_program_file_is_called(cli):
    result = _complete(cli, "nimbus no")  # the binary here is `python -m nimbus`
    assert (result.returncode, result.stdout, result.stderr) == (0, "plain,node\n", "")


def test_node_and_swarm_names_come_from_the_api(server, cli, admin):
    for name in ("web-1", "web-2", "db-1"):
        cli.run("node", "add", "--ip", "192.0.2.50", "--name", name)
    cli.run("swarm", "create", "--name", "prod")
    result = _complete(cli, "nimbus node describe we")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == ["plain,web-1", "plain,web-2"]
    swarm = _complete(cli, "nimbus swarm add-node --swarm ")
    assert swarm.stdout.splitlines() == ["plain,prod"]
    node_id = cli.json("node", "list")[0]["id"]
    by_id = _complete(cli, f"nimbus node drain {node_id[:8]}")
    assert f"plain,{node_id}" in by_id.stdout.splitlines()
    zsh = _complete(cli, "nimbus node delete db", kind="zsh")
    assert zsh.stdout.splitlines() == ["plain", "db-1", "pending"]  # with the status as help


def test_a_dead_api_completes_nothing_and_quietly(server, cli, admin):
    server.stop()
    result = _complete(cli, "nimbus node describe ")
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "", "")


def test_user_ids_complete_with_the_username_as_help(server, cli, admin):
    user = cli.json("iam", "list-users")[0]
    result = _complete(cli, "nimbus iam list-keys --user-id user-", kind="zsh")
    assert result.stdout.splitlines() == ["plain", user["id"], user["username"]]
