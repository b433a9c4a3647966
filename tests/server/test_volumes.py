"""NFS volumes in-process: records, checks, client lists that follow the swarm, node hooks.

A fake agent thread answers the nodes' tasks (volume.check, volume.sync) the way the real
handlers do, and keeps the last sync payload each node got: that is the node's share.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nimbus.errors import BadRequest, Conflict, NotFound
from nimbus.server import hooks, nodes, tasks
from nimbus.server.swarm import groups, lifecycle, services
from nimbus.server.volumes import records


class FakeAgents:
    """Answers every node's tasks; `share[node]` is the last volume.sync payload."""

    def __init__(self, state: Any, node_ids: list[str]) -> None:
        self.state, self.node_ids = state, node_ids
        self.share: dict[str, dict[str, Any]] = {}
        self.fail_check: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.01):
            for node_id in self.node_ids:
                if node_id not in self.state.store.read("nodes"):
                    continue
                for task in tasks._deliver(self.state, node_id):
                    status, out = self.answer(node_id, task)
                    tasks.report(self.state, node_id, task["id"], status, out)

    def answer(self, node_id: str, task: dict[str, Any]) -> tuple[str, str]:
        p = task["payload"]
        if task["type"] == "volume.check":
            if self.fail_check:
                return "failed", self.fail_check
            return "succeeded", json.dumps(
                {"folder": p.get("folder") or f"/var/lib/nimbus/volumes/{p['name']}"})
        if task["type"] == "volume.sync":
            before = {m["name"] for m in self.share.get(node_id, {}).get("mounts", [])}
            self.share[node_id] = p
            now = {m["name"] for m in p["mounts"]}
            mounts = {**{n: "ok" for n in now}, **{n: "removed" for n in before - now}}
            return "succeeded", json.dumps({"served": [e["name"] for e in p["serve"]["exports"]],
                                            "errors": {}, "mounts": mounts})
        return "succeeded", "{}"

    def exports(self, node_id: str) -> dict[str, list[str]]:
        return {e["name"]: e["clients"]
                for e in self.share.get(node_id, {}).get("serve", {}).get("exports", [])}

    def mounts(self, node_id: str) -> list[str]:
        return [m["name"] for m in self.share.get(node_id, {}).get("mounts", [])]


def wait_for(check: Any, what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def lab(inproc) -> Iterator[dict[str, Any]]:
    ids = {}
    for i, name in enumerate(("n1", "n2", "n3"), start=1):
        node_id, cert = inproc.joined_node(ip=f"192.0.2.{10 + i}")
        tools = {"ganesha": "4.3"} if name != "n3" else {}
        beat = {"tools": tools} if tools else {}
        assert inproc.call("POST", "/v1/internal/heartbeat", beat, cert_pem=cert).status == 200
        with inproc.state.store.transaction("nodes") as tx:
            tx["nodes"][node_id]["name"] = name
        ids[name] = node_id
    sid = groups.create(inproc.state, "web", actor="test")["id"]
    for name in ("n1", "n2"):
        set_member(inproc.state, sid, ids[name], True)
    agents = FakeAgents(inproc.state, list(ids.values()))
    agents.thread.start()
    yield {"state": inproc.state, "inproc": inproc, "ids": ids, "swarm": sid, "agents": agents}
    agents.stop.set()
    agents.thread.join()


def set_member(state: Any, swarm_id: str, node_id: str, member: bool) -> None:
    """What swarm add-node/remove-node do to the record, without Docker."""
    with state.store.transaction("swarms") as tx:
        members = tx["swarms"][swarm_id]["members"]
        if member:
            members[node_id] = {"role": "worker", "swarm_node_id": None, "added_at": 0}
            tx["swarms"][swarm_id]["manager"] = tx["swarms"][swarm_id]["manager"] or node_id
        else:
            members.pop(node_id, None)
    hooks.emit(state, "swarm.members_changed", swarm_id=swarm_id)


def ip(lab: dict[str, Any], name: str) -> str:
    return lab["state"].store.read("nodes")[lab["ids"][name]]["wireguard_ip"]


def create(lab: dict[str, Any], name: str = "data", node: str = "n1", swarm: str = "web",
           folder: str | None = None, root_squash: bool = True) -> dict[str, Any]:
    return records.create(lab["state"], name, node, swarm, folder, root_squash, actor="test")


def test_create_serves_the_export_to_the_swarm_members_only(lab):
    v = create(lab)
    assert v["status"] == "ready" and v["node"] == "n1" and v["swarm"] == "web"
    assert v["folder"] == "/var/lib/nimbus/volumes/data" and v["export_path"] == "/data"
    assert v["server_ip"] == ip(lab, "n1")
    assert v["clients"] == sorted([ip(lab, "n1"), ip(lab, "n2")])
    agents, ids = lab["agents"], lab["ids"]
    assert agents.exports(ids["n1"]) == {"data": v["clients"]}
    assert agents.exports(ids["n2"]) == {}
    wait_for(lambda: set(records.describe(lab["state"], "data")["mounts"]) == {"n1", "n2"},
             "both members' Docker volumes")
    assert agents.mounts(ids["n2"]) == ["data"] and ids["n3"] not in agents.share
    sent = agents.share[ids["n2"]]["mounts"][0]
    assert sent == {"name": "data", "server_ip": ip(lab, "n1"), "export_path": "/data"}


def test_clients_follow_the_swarm_membership_at_once(lab):
    create(lab)
    agents, ids, state = lab["agents"], lab["ids"], lab["state"]
    set_member(state, lab["swarm"], ids["n3"], True)
    wait_for(lambda: ip(lab, "n3") in agents.exports(ids["n1"]).get("data", []), "n3 allowed")
    wait_for(lambda: agents.mounts(ids["n3"]) == ["data"], "n3's Docker volume")
    set_member(state, lab["swarm"], ids["n3"], False)
    wait_for(lambda: ip(lab, "n3") not in agents.exports(ids["n1"])["data"], "n3 refused")
    wait_for(lambda: agents.mounts(ids["n3"]) == [], "n3's Docker volume removed")
    wait_for(lambda: "n3" not in records.describe(state, "data")["mounts"], "mounts updated")


@pytest.mark.parametrize("kw, error, match", [
    ({"name": "Bad_Name"}, BadRequest, "volume name"),
    ({"name": "-x"}, BadRequest, "volume name"),
    ({"folder": "relative/path"}, BadRequest, "absolute"),
    ({"folder": "/srv/../etc"}, BadRequest, "plain"),
    ({"folder": "/"}, BadRequest, "root directory"),
    ({"folder": "/etc"}, BadRequest, "system directory"),
    ({"node": "nope"}, NotFound, "no node 'nope'"),
    ({"swarm": "nope"}, NotFound, "no swarm 'nope'"),
    ({"node": "n3"}, Conflict, "apt install nfs-ganesha nfs-ganesha-vfs"),
])
def test_bad_input_is_one_clear_error_and_changes_nothing(lab, kw, error, match):
    before_tasks = lab["state"].store.read("tasks")
    with pytest.raises(error, match=match):
        create(lab, **kw)
    assert lab["state"].store.read("volumes") == {}
    assert lab["state"].store.read("tasks") == before_tasks


def test_the_nodes_own_check_refusal_changes_nothing(lab):
    lab["agents"].fail_check = "/var/lib/nimbus is or contains the agent's data dir"
    with pytest.raises(Conflict, match="agent's data dir"):
        create(lab, folder="/var/lib")
    assert lab["state"].store.read("volumes") == {}


def test_names_are_unique_and_folders_on_one_node_do_not_overlap(lab):
    create(lab, folder="/srv/a")
    with pytest.raises(Conflict, match="already exists"):
        create(lab, folder="/srv/b")
    with pytest.raises(Conflict, match="overlaps"):
        create(lab, name="inner", folder="/srv/a/b")
    second = create(lab, name="other", node="n2", folder="/srv/a")  # another node: fine
    assert second["status"] == "ready"
    third = create(lab, name="third")  # the default folder: volumes/third, no overlap
    assert third["status"] == "ready" and third["folder"].endswith("/volumes/third")
    assert {e for e in lab["agents"].exports(lab["ids"]["n2"])} == {"other"}


def test_delete_is_refused_while_a_service_maps_the_volume_even_forced(lab):
    create(lab)
    state = lab["state"]
    with state.store.transaction("services") as tx:
        tx["services"]["shop"] = {"name": "shop", "swarm_id": lab["swarm"], "compose": {},
                                  "created_at": 0, "volumes": {"db": "data"}}
    for force in (False, True):
        with pytest.raises(Conflict, match="used by service\\(s\\) shop"):
            records.delete(state, "data", force, actor="test")
    with state.store.transaction("services") as tx:
        del tx["services"]["shop"]
    out = records.delete(state, "data", False, actor="test")
    assert out["deleted"] and "stays in /var/lib/nimbus/volumes/data on n1" in out["kept"]
    agents, ids = lab["agents"], lab["ids"]
    wait_for(lambda: agents.exports(ids["n1"]) == {} and agents.mounts(ids["n2"]) == [],
             "export and Docker volumes gone")


def test_a_swarm_with_volumes_is_not_deleted_until_they_are(lab):
    create(lab)
    create(lab, name="logs", folder="/srv/logs")
    state = lab["state"]
    with pytest.raises(Conflict, match=r"swarm web still has volume\(s\) data, logs: delete"):
        lifecycle.delete(state, "web", actor="test")
    assert groups.find(state.store.read("swarms"), "web")["members"]  # nothing changed
    assert not [t for t in state.store.read("tasks").values() if t["type"] == "swarm.leave"]
    assert records.describe(state, "data")["clients"] == sorted([ip(lab, "n1"), ip(lab, "n2")])
    for name in ("data", "logs"):
        records.delete(state, name, False, actor="test")
    assert lifecycle.delete(state, "web", actor="test")["deleted"]
    assert state.store.read("swarms") == {}
    assert [t for t in state.store.read("tasks").values() if t["type"] == "swarm.leave"]


def test_deleting_the_serving_node_needs_force_and_leaves_the_volume_lost(lab):
    create(lab)
    state, ids, agents = lab["state"], lab["ids"], lab["agents"]
    with pytest.raises(Conflict, match="serves the volume\\(s\\) data"):
        nodes.delete(state, ids["n1"], actor="test")
    assert records.describe(state, "data")["status"] == "ready"
    nodes.delete(state, ids["n1"], actor="test", force=True)
    v = records.describe(state, "data")
    assert v["status"] == "lost" and v["clients"] == []
    wait_for(lambda: agents.mounts(ids["n2"]) == [], "members drop the Docker volume")
    assert records.delete(state, "data", False, actor="test")["deleted"]  # no server to ask


def test_deleting_a_member_node_drops_it_from_the_clients(lab):
    create(lab)
    state, ids, agents = lab["state"], lab["ids"], lab["agents"]
    n2_ip = ip(lab, "n2")
    nodes.delete(state, ids["n2"], actor="test")
    wait_for(lambda: n2_ip not in agents.exports(ids["n1"])["data"], "n2 refused")
    assert records.describe(state, "data")["clients"] == [ip(lab, "n1")]


def test_the_api_checks_its_body_and_admin(lab):
    call = lab["inproc"].call
    assert call("POST", "/v1/volumes", {"name": "x", "node": "n1"}).status in (400, 401)


def test_no_root_squash_reaches_the_export(lab):
    create(lab, root_squash=False)
    [export] = lab["agents"].share[lab["ids"]["n1"]]["serve"]["exports"]
    assert export["root_squash"] is False and export["export_id"] == 1


COMPOSE = {"services": {"db": {"image": "busybox", "volumes": ["db:/data"]}},
           "volumes": {"db": {}}}


def test_a_stack_maps_a_compose_volume_to_the_nfs_volume(lab):
    create(lab)
    state = lab["state"]
    out = services.deploy(state, "shop", "web", COMPOSE, "test", volumes={"db": "data"})
    assert out["volumes"] == {"db": "data"}
    assert state.store.read("services")["shop"]["compose"] == COMPOSE  # as given
    sent = services.render_deploy(state, lab["ids"]["n1"], {"name": "shop"})["compose"]
    assert sent["volumes"]["db"] == {"external": True, "name": "nimbus-data"}
    assert hooks.query(state, "volume.users", volume="data") == ["shop"]
    with pytest.raises(Conflict, match="shop"):
        records.delete(state, "data", True, actor="test")


@pytest.mark.parametrize("mapping, error, match", [
    ({"nope": "data"}, BadRequest, "declares no volume 'nope'"),
    ({"db": "missing"}, NotFound, "no volume 'missing'"),
])
def test_a_stack_cannot_map_what_is_not_there(lab, mapping, error, match):
    create(lab)
    with pytest.raises(error, match=match):
        services.deploy(lab["state"], "shop", "web", COMPOSE, "test", volumes=mapping)
    assert "shop" not in lab["state"].store.read("services")


def test_a_stack_cannot_map_a_volume_of_another_swarm(lab):
    create(lab)
    state, ids = lab["state"], lab["ids"]
    other = groups.create(state, "other", actor="test")["id"]
    set_member(state, other, ids["n3"], True)
    with pytest.raises(Conflict, match="attached to swarm web, not to this one"):
        services.deploy(state, "shop", "other", COMPOSE, "test", volumes={"db": "data"})


@pytest.mark.parametrize("bad", [{"db": "Bad Name"}, {"b@d": "data"}, ["db=data"],
                                 {f"v{i}": "d" for i in range(33)}])
def test_a_malformed_volume_map_is_refused(bad):
    with pytest.raises(BadRequest):
        services.check_volume_map(bad)
