"""Durations on the monotonic clock: offline detection and task redelivery ignore wall-clock
steps of +-1 h and +-1 day (a clock stepped back showed a dead node as ready for an hour)."""

from __future__ import annotations

import pytest

from nimbus import wire
from nimbus.config import ServerConfig
from nimbus.security.pki import make_csr
from nimbus.security.wgkeys import generate_keypair
from nimbus.server import enroll, heartbeat, nodes, tasks
from nimbus.server.boot import open_state
from nimbus.server.clock import Stamps

STEPS = [3600, -3600, 86400, -86400]


class Clocks:
    def __init__(self) -> None:
        self.wall, self.mono = 1_800_000_000.0, 500.0

    def run(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def joined(tmp_path):
    clocks = Clocks()
    config = ServerConfig(data_dir=str(tmp_path / "data"), wireguard=False,
                          heartbeat_interval_sec=10).validate()
    state = open_state(config, clock=lambda: clocks.wall, monotonic=lambda: clocks.mono)
    created = nodes.create(state, "192.0.2.9", None, actor="test")
    fields = wire.decode_join_token(created["join_token"])
    enroll.join(state, {"node_id": fields["node_id"], "secret": fields["secret"],
                        "csr": make_csr(fields["node_id"])[0],
                        "wireguard_public_key": generate_keypair()[1]}, "192.0.2.9")
    return state, clocks, fields["node_id"]


def _status(state, node_id):
    return nodes.public_node(state, state.store.read("nodes")[node_id])["status"]


@pytest.mark.parametrize("step", STEPS)
def test_offline_detection_ignores_clock_steps(joined, step):
    state, clocks, node_id = joined
    heartbeat.heartbeat(state, node_id, {})
    clocks.wall += step
    assert _status(state, node_id) == "ready"  # a step is not silence (nor a heartbeat)
    clocks.run(29)
    assert _status(state, node_id) == "ready"
    clocks.run(2)  # 31 s without a heartbeat: 3 intervals of 10 s are over
    assert _status(state, node_id) == "offline"
    assert b'"offline"' in nodes.listing_json(state)


@pytest.mark.parametrize("step", STEPS)
def test_task_redelivery_ignores_clock_steps(joined, step):
    state, clocks, node_id = joined
    with state.store.transaction("tasks") as tx:
        tasks.enqueue(state, tx["tasks"], [node_id], "noop", {})
    assert len(tasks.fetch(state, node_id, 0)) == 1
    clocks.wall += step
    assert tasks.fetch(state, node_id, 0) == []  # delivered, not yet due again
    clocks.run(tasks.REDELIVER_AFTER_SEC - 1)
    assert tasks.fetch(state, node_id, 0) == []
    clocks.run(2)
    assert len(tasks.fetch(state, node_id, 0)) == 1


@pytest.mark.parametrize("step", STEPS)
def test_an_event_from_before_the_start_is_aged_once_by_the_wall_clock(step):
    clocks = Clocks()
    stamps = Stamps(lambda: clocks.wall, lambda: clocks.mono)
    stored = clocks.wall - 100  # e.g. last_seen from runtime.json, before this start
    clocks.wall += step
    clocks.run(5)
    assert stamps.age(("seen", "n"), stored) == pytest.approx(105)
    stamps.mark(("seen", "n"))
    clocks.run(7)
    assert stamps.age(("seen", "n"), stored) == pytest.approx(7)
