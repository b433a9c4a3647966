"""Swarm groups and services through the real server and CLI, nodes driven by hand over mTLS.

The nodes here are this test speaking the agent's protocol (join, heartbeat, task
results), so the control plane's side is exercised without Docker: input checks, the
"no Docker" refusal, and above all that the swarm join token is sealed at rest, travels
only in the delivered join payload and never shows in the store, logs or CLI output.
The real agent and Docker are covered by tests/e2e/test_swarm.py.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nimbus.client import ApiClient
from tests.harness import Cli, Server
from tests.integration.agents import add_node, control_plane, join_direct, node_client, wait_for

TOKEN_W = "SWMTKN-1-" + "w" * 50 + "-" + "x" * 25
TOKEN_M = "SWMTKN-1-" + "w" * 50 + "-" + "m" * 25
DOCKER = {"version": "20.10.24+dfsg1", "swarm_state": "inactive", "swarm_node_id": ""}


class HandNode:
    """A joined node whose agent is this test: heartbeats, fetches tasks, answers them."""

    def __init__(self, server: Server, cli: Cli, tmp: Path, name: str) -> None:
        _, token = add_node(cli, name=name)
        self.id, cert, key = join_direct(server, token, tmp / name)
        self.client: ApiClient = node_client(server, cert, key)
        self.seen: list[dict[str, Any]] = []

    def heartbeat(self, docker: dict[str, Any] | None) -> None:
        body: dict[str, Any] = {"agent_version": "0.1.0"}
        if docker is not None:
            body["docker"] = docker
        self.client.request("POST", "/v1/internal/heartbeat", body)

    def answer(self, replies: dict[str, dict[str, Any] | str], want: set[str]) -> None:
        """Answer tasks by type (a dict succeeds, a str fails) until each of `want` came."""
        deadline = time.monotonic() + 30
        while not want <= {t["type"] for t in self.seen} and time.monotonic() < deadline:
            for task in self.client.request("GET", f"/v1/internal/tasks/{self.id}?wait=5"):
                self.seen.append(task)
                reply = replies.get(task["type"], {})
                status, output = (("failed", reply) if isinstance(reply, str)
                                  else ("succeeded", json.dumps(reply)))
                self.client.request("POST", f"/v1/internal/tasks/{task['id']}/result",
                                    {"status": status, "output": output})


def in_background(fn: Any, *args: Any) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


@pytest.fixture
def cp(server_factory: Any, cli: Cli) -> Server:
    return control_plane(server_factory, cli)


def test_swarm_input_is_checked_and_nothing_changes(cp: Server, cli: Cli):
    for bad in ("", "-x", "a b", "x" * 64, "\x1b[31m"):
        out = cli.run("swarm", "create", "--name", bad, check=False)
        assert out.returncode != 0 and out.stderr.startswith("error: "), out.stderr
        assert "Traceback" not in out.stderr
    assert cli.json("swarm", "list") == []
    cli.json("swarm", "create", "--name", "alpha")
    dup = cli.run("swarm", "create", "--name", "alpha", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    missing = cli.run("swarm", "describe", "nope", check=False)
    assert missing.returncode != 0 and "no swarm" in missing.stderr
    ghost = cli.run("swarm", "add-node", "--swarm", "alpha", "--node", "ghost", check=False)
    assert ghost.returncode != 0 and "no such node" in ghost.stderr
    role = cli.run("swarm", "add-node", "--swarm", "alpha", "--node", "n1", "--role", "boss",
                   check=False)
    assert role.returncode != 0
    assert [s["name"] for s in cli.json("swarm", "list")] == ["alpha"]


def test_add_node_without_docker_fails_at_once_with_a_clear_error(cp: Server, cli: Cli,
                                                                 tmp_path: Path):
    node = HandNode(cp, cli, tmp_path, "plain")
    node.heartbeat(docker=None)
    cli.json("swarm", "create", "--name", "alpha")
    out = cli.run("swarm", "add-node", "--swarm", "alpha", "--node", "plain", check=False)
    assert out.returncode != 0
    assert "has no Docker Engine" in out.stderr and "install" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert cli.json("swarm", "describe", "alpha")["nodes"] == []
    assert node.client.request("GET", f"/v1/internal/tasks/{node.id}?wait=0") == []


def test_join_token_is_sealed_and_only_delivered_to_the_joining_node(cp: Server, cli: Cli,
                                                                    tmp_path: Path):
    n1 = HandNode(cp, cli, tmp_path, "n1")
    n2 = HandNode(cp, cli, tmp_path, "n2")
    for n in (n1, n2):
        n.heartbeat(DOCKER)
    cli.json("swarm", "create", "--name", "alpha")
    init_reply = {"swarm_node_id": "a" * 25, "swarm_id": "c" * 25,
                  "tokens": {"worker": TOKEN_W, "manager": TOKEN_M}}
    inspect_reply = {"nodes": [{"swarm_node_id": "a" * 25, "hostname": "n1",
                                "role": "manager", "state": "ready",
                                "availability": "active", "engine_version": "20.10.24"}]}
    replies = {"swarm.init": init_reply, "swarm.inspect": inspect_reply}
    t = in_background(n1.answer, replies, {"swarm.init", "swarm.inspect"})
    first = cli.json("swarm", "add-node", "--swarm", "alpha", "--node", "n1")
    t.join(30)
    assert first["manager"] == n1.id, n1.seen
    assert first["nodes"][0]["state"] == "ready" and first["nodes"][0]["role"] == "manager", n1.seen
    init = next(x for x in n1.seen if x["type"] == "swarm.init")
    assert init["payload"]["addr"]  # the node's overlay address

    n1.seen.clear()
    n2.heartbeat(DOCKER)  # heartbeats come every second (FAST); still ready
    t1 = in_background(n1.answer, replies, {"swarm.inspect"})
    t2 = in_background(n2.answer, {"swarm.join": {"swarm_node_id": "b" * 25}}, {"swarm.join"})
    second = cli.json("swarm", "add-node", "--swarm", "alpha", "--node", n2.id)
    t1.join(30)
    t2.join(30)
    join = next(x for x in n2.seen if x["type"] == "swarm.join")
    assert join["payload"]["token"] == TOKEN_W  # opened only into the delivered payload
    assert join["payload"]["role"] == "worker"
    assert {m["name"] for m in second["nodes"]} == {"n1", "n2"}

    cp.stop()  # flush everything to disk, then search it all for the token
    found = [str(p) for p in cp.tmp.rglob("*") if p.is_file() and b"SWMTKN-" in p.read_bytes()]
    assert found == []
    assert "SWMTKN-" not in cp.log()
    swarms = json.loads((cp.data_dir / "store" / "swarms.json").read_text())
    sealed = next(iter(swarms["data"].values()))["tokens"]
    assert set(sealed) == {"worker", "manager"}
    assert all(v.startswith("enc1:") for v in sealed.values())


def test_failures_on_the_node_come_back_as_one_line(cp: Server, cli: Cli, tmp_path: Path):
    n1 = HandNode(cp, cli, tmp_path, "n1")
    n1.heartbeat(DOCKER)
    cli.json("swarm", "create", "--name", "alpha")
    t = in_background(n1.answer, {"swarm.init": "docker swarm init: Error response from "
                                                "daemon: address already in use"},
                      {"swarm.init"})
    out = cli.run("swarm", "add-node", "--swarm", "alpha", "--node", "n1", check=False)
    t.join(30)
    assert out.returncode != 0
    assert "swarm.init failed on node n1" in out.stderr and "already in use" in out.stderr
    assert cli.json("swarm", "describe", "alpha")["nodes"] == []  # nothing recorded


def test_service_input_is_checked(cp: Server, cli: Cli, tmp_path: Path):
    cli.json("swarm", "create", "--name", "alpha")
    good = tmp_path / "ok.yml"
    good.write_text("services:\n  web:\n    image: busybox\n")
    empty = cli.run("service", "deploy", "--swarm", "alpha", "--file", str(good), "--name",
                    "web", check=False)
    assert empty.returncode != 0 and "no nodes yet" in empty.stderr
    cases = {"broken.yml": ("services: [\n", "line"),
             "list.yml": ("- a\n- b\n", "mapping"),
             "nobuild.yml": ("services:\n  web:\n    build: .\n", "no image"),
             "v2.yml": ("version: '2.4'\nservices:\n  web:\n    image: x\n", "not supported")}
    for name, (text, why) in cases.items():
        (tmp_path / name).write_text(text)
        out = cli.run("service", "deploy", "--swarm", "alpha", "--file",
                      str(tmp_path / name), "--name", "web", check=False)
        assert out.returncode != 0 and why in out.stderr, (name, out.stderr)
        assert "Traceback" not in out.stderr
    for bad_name in ("Web", "-x", "a/b", "x" * 64):
        out = cli.run("service", "deploy", "--swarm", "alpha", "--file", str(good), "--name",
                      bad_name, check=False)
        assert out.returncode != 0, bad_name
    missing = cli.run("service", "describe", "nope", check=False)
    assert missing.returncode != 0 and "no service" in missing.stderr
    assert cli.json("service", "list") == []


def test_node_describe_and_delete_accept_names(cp: Server, cli: Cli, tmp_path: Path):
    n1 = HandNode(cp, cli, tmp_path, "n1")
    n1.heartbeat(DOCKER)
    described = wait_for(lambda: cli.json("node", "describe", "n1").get("docker"),
                         "the heartbeat's docker report")
    assert described["swarm_state"] == "inactive"
    assert cli.json("node", "delete", "n1")["id"] == n1.id
    gone = cli.run("node", "describe", "n1", check=False)
    assert gone.returncode != 0 and "no such node" in gone.stderr


def test_a_node_whose_agent_died_is_refused_at_once(cp: Server, cli: Cli, tmp_path: Path):
    n1 = HandNode(cp, cli, tmp_path, "n1")
    n1.heartbeat(DOCKER)  # then the "agent" dies: no more heartbeats
    cli.json("swarm", "create", "--name", "alpha")
    wait_for(lambda: cli.json("node", "describe", "n1")["status"] == "offline",
             "the node to go offline", timeout=20)
    out = cli.run("swarm", "add-node", "--swarm", "alpha", "--node", "n1", check=False)
    assert out.returncode != 0 and "is offline" in out.stderr
    assert cli.json("swarm", "describe", "alpha")["nodes"] == []


def test_the_last_manager_cannot_be_deleted_while_workers_remain(cp: Server, cli: Cli,
                                                                tmp_path: Path):
    n1 = HandNode(cp, cli, tmp_path, "n1")
    n2 = HandNode(cp, cli, tmp_path, "n2")
    for n in (n1, n2):
        n.heartbeat(DOCKER)
    cli.json("swarm", "create", "--name", "alpha")
    init = {"swarm_node_id": "a" * 25, "tokens": {"worker": TOKEN_W, "manager": TOKEN_M}}
    t = in_background(n1.answer, {"swarm.init": init}, {"swarm.init", "swarm.inspect"})
    cli.json("swarm", "add-node", "--swarm", "alpha", "--node", "n1")
    t.join(30)
    n1.seen.clear()
    n2.heartbeat(DOCKER)
    t1 = in_background(n1.answer, {}, {"swarm.inspect"})
    t2 = in_background(n2.answer, {"swarm.join": {"swarm_node_id": "b" * 25}}, {"swarm.join"})
    cli.json("swarm", "add-node", "--swarm", "alpha", "--node", "n2")
    t1.join(30)
    t2.join(30)

    refused = cli.run("node", "delete", "n1", check=False)
    assert refused.returncode != 0 and "last manager" in refused.stderr
    assert "n1" in {n["name"] for n in cli.json("node", "list")}  # nothing changed

    n1.seen.clear()
    cli.json("node", "delete", "n1", "--force")
    desc = cli.json("swarm", "describe", "alpha")
    assert [m["name"] for m in desc["nodes"]] == ["n2"]
    assert desc["manager"] is None  # no manager left to run tasks: the operator must act


def test_operations_waiting_for_nodes_hold_at_most_an_eighth_of_the_workers(
        server_factory: Any, cli: Cli, tmp_path: Path):
    """Issue 23: nothing waits on an agent in more than a small share of the pool. With 16
    workers two add-nodes may wait for silent nodes; a third is refused at once with 429,
    queues nothing, and every other request is still answered."""
    cp = control_plane(server_factory, cli, threads=16)
    hand = [HandNode(cp, cli, tmp_path, f"n{i}") for i in range(3)]
    for i, n in enumerate(hand):
        n.heartbeat(DOCKER)
        cli.json("swarm", "create", "--name", f"s{i}")
    waiting = [in_background(lambda i=i: cli.run("swarm", "add-node", "--swarm", f"s{i}",
                                                 "--node", f"n{i}", check=False))
               for i in range(2)]

    def init_task(n: HandNode) -> dict[str, Any] | None:
        tasks = n.client.request("GET", f"/v1/internal/tasks/{n.id}?wait=1")
        return next((t for t in tasks if t["type"] == "swarm.init"), None)

    held = [wait_for(lambda n=n: init_task(n), f"{n.id}'s swarm.init") for n in hand[:2]]
    third = cli.run("swarm", "add-node", "--swarm", "s2", "--node", "n2", check=False)
    assert third.returncode != 0 and "already waiting for nodes" in third.stderr, third.stderr
    assert hand[2].client.request("GET", f"/v1/internal/tasks/{hand[2].id}?wait=0") == []
    assert len(cli.json("node", "list")) == 3  # the other workers are free
    for n, task in zip(hand[:2], held):
        n.client.request("POST", f"/v1/internal/tasks/{task['id']}/result",
                         {"status": "failed", "output": "no"})
    for t in waiting:
        t.join(30)
    hand[2].heartbeat(DOCKER)  # still ready after the wait
    t = in_background(hand[2].answer, {"swarm.init": "refused by this test"}, {"swarm.init"})
    again = cli.run("swarm", "add-node", "--swarm", "s2", "--node", "n2", check=False)
    t.join(30)
    assert "swarm.init failed on node n2" in again.stderr, again.stderr  # a slot again
