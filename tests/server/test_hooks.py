"""The registry's seams, in-process: node-delete hooks, events, queries, reported tools."""

from __future__ import annotations

import dataclasses

import pytest

from nimbus.errors import Conflict
from nimbus.server import hooks, nodes, registry
from nimbus.server.swarm import groups  # the Swarm package's own queries


def _with(inproc, *extra: registry.Subsystem) -> None:
    inproc.state.subsystems = registry.check(inproc.state.subsystems + extra)


def test_a_subsystem_may_refuse_a_node_delete_and_nothing_changes(inproc):
    node_id, _cert = inproc.joined_node()

    def refuse(state, nid, force):
        if not force:
            raise Conflict(f"volume v1 is served by {nid}")

    _with(inproc, registry.Subsystem(name="refuser", check_node_delete=refuse))
    before = (inproc.state.store.read("nodes"), inproc.state.store.read("revoked"))
    with pytest.raises(Conflict, match=f"volume v1 is served by {node_id}"):
        nodes.delete(inproc.state, node_id, actor="test")
    assert (inproc.state.store.read("nodes"), inproc.state.store.read("revoked")) == before
    nodes.delete(inproc.state, node_id, actor="test", force=True)
    assert node_id not in inproc.state.store.read("nodes")


def test_every_subsystem_cleans_up_after_a_delete_even_when_one_fails(inproc):
    node_id, _cert = inproc.joined_node()
    seen: list[tuple[str, str]] = []

    def broken(state, nid):
        seen.append(("broken", nid))
        raise RuntimeError("disk on fire")

    def fine(state, nid):
        assert nid not in state.store.read("nodes")  # called after the delete committed
        seen.append(("fine", nid))

    _with(inproc, registry.Subsystem(name="broken", node_deleted=broken),
          registry.Subsystem(name="fine", node_deleted=fine))
    nodes.delete(inproc.state, node_id, actor="test")
    assert seen == [("broken", node_id), ("fine", node_id)]


def test_events_reach_every_listener_and_queries_their_one_provider(inproc):
    heard: list[str] = []
    _with(inproc,
          registry.Subsystem(name="a", listeners={"x.changed": lambda s, key: heard.append(key)},
                             queries={"x.count": lambda s, key: len(key)}),
          registry.Subsystem(name="b", listeners={"x.changed": lambda s, key: key.upper()}))
    assert hooks.emit(inproc.state, "x.changed", key="k1") == [None, "K1"]
    assert heard == ["k1"]
    assert hooks.query(inproc.state, "x.count", key="abc") == 3
    with pytest.raises(LookupError):
        hooks.query(inproc.state, "nobody.answers")


def test_the_registry_refuses_two_providers_names_or_task_types():
    one = registry.Subsystem(name="a", queries={"q": lambda s: 1})
    with pytest.raises(RuntimeError, match="query q"):
        registry.check((one, dataclasses.replace(one, name="b")))
    with pytest.raises(RuntimeError, match="subsystem a"):
        registry.check((one, registry.Subsystem(name="a")))
    with pytest.raises(RuntimeError, match="task type noop"):
        registry.check((registry.Subsystem(name="c", task_types=(registry.NOOP,)),))


def test_swarm_answers_its_queries(inproc):
    assert hooks.query(inproc.state, "swarm.exists", swarm_id="swarm-nope") is False
    sid = groups.create(inproc.state, "demo", actor="test")["id"]
    assert hooks.query(inproc.state, "swarm.resolve", ref="demo") == sid
    assert hooks.query(inproc.state, "swarm.members", swarm_id=sid) == []


def test_reported_tools_are_kept_once_and_shown(inproc):
    node_id, cert = inproc.joined_node()
    beat = {"tools": {"ganesha": "4.3", "weed": "4.48"}}
    assert inproc.call("POST", "/v1/internal/heartbeat", beat, cert_pem=cert).status == 200
    shown = nodes.describe(inproc.state, node_id)
    assert shown["tools"] == {"ganesha": "4.3", "weed": "4.48"}
    assert nodes.tool_version(inproc.state.store.read("nodes")[node_id], "weed") == "4.48"
    before = inproc.state.store.read("nodes")
    assert inproc.call("POST", "/v1/internal/heartbeat", beat, cert_pem=cert).status == 200
    assert inproc.state.store.read("nodes") is before  # the same tools again: no write


@pytest.mark.parametrize("tools", [
    {"Bad Name": "1"}, {"weed": "x" * 65}, {"weed": 3}, {f"t{i}": "1" for i in range(17)},
    ["weed"], {"weed": "1\n2"},
])
def test_malformed_tools_are_refused(inproc, tools):
    _node_id, cert = inproc.joined_node()
    answer = inproc.call("POST", "/v1/internal/heartbeat", {"tools": tools}, cert_pem=cert)
    assert answer.status == 400 and "tools" in answer.body["error"]
