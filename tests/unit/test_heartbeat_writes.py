"""A steady heartbeat never rewrites the nodes file, also for nodes recorded before a fact
(`tools`, `docker`) existed: each such first heartbeat used to rewrite all of nodes.json."""

from __future__ import annotations

import os

from nimbus.server import heartbeat, nodes
from tests.unit.test_clock_steps import joined  # noqa: F401 - the fixture

BODY = {"hostname": "n1", "arch": "x86_64", "agent_version": "1.0",
        "cpu": {"count": 2, "usage": 0.5}}


def _stamp(state):
    st = os.stat(state.store.root / "nodes.json")
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def test_a_node_recorded_without_tools_is_not_rewritten_by_its_heartbeats(joined):  # noqa: F811
    state, clocks, node_id = joined
    heartbeat.heartbeat(state, node_id, BODY)  # hostname, arch, version: new facts, one write
    with state.store.transaction("nodes") as tx:  # as recorded before `tools` and `docker`
        tx["nodes"][node_id].pop("tools", None)
        tx["nodes"][node_id].pop("docker", None)
    before = _stamp(state)
    for _ in range(3):
        heartbeat.heartbeat(state, node_id, BODY)
    assert _stamp(state) == before
    clocks.run(nodes.FACT_CHANGE_SEC)  # facts change at most once a minute (docs/security.md)
    heartbeat.heartbeat(state, node_id, {**BODY, "tools": {"weed": "3.80"}})  # a real change
    assert _stamp(state) != before
    assert state.store.read("nodes")[node_id]["tools"] == {"weed": "3.80"}
