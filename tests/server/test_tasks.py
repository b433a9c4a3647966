"""The task queue itself (server/tasks.py): coalescing, redelivery, results, the long-poll cap."""

from __future__ import annotations

import threading
import time

import pytest

from nimbus.errors import BadRequest, NotFound, Throttled
from nimbus.server import mesh, tasks

NODE_A, NODE_B = "node-000000000000000a", "node-000000000000000b"


def queue(state, node_ids, kind, payload=None):
    with state.store.transaction("tasks") as tx:
        created = tasks.enqueue(state, tx["tasks"], node_ids, kind, payload)
    state.waiters.notify(node_ids)
    return created


def test_a_coalescing_type_keeps_one_undelivered_task_per_node(inproc):
    state = inproc.state
    first = queue(state, [NODE_A, NODE_B], mesh.UPDATE_PEERS)
    assert len(first) == 2
    assert queue(state, [NODE_A], mesh.UPDATE_PEERS) == []  # still pending: coalesced
    delivered = tasks.fetch(state, NODE_A, 0)
    assert [t["id"] for t in delivered] == [first[0]]
    # Once delivered, a new change needs a new task: the agent may already have applied
    # the old list.
    assert len(queue(state, [NODE_A], mesh.UPDATE_PEERS)) == 1


def test_other_types_queue_every_task_in_order(inproc):
    state = inproc.state
    ids = []
    for n in range(3):
        ids += queue(state, [NODE_A], "noop", {"n": n})
        inproc.clock.now += 0.01  # FIFO is by creation time (tasks.json is a map)
    due = tasks.fetch(state, NODE_A, 0)
    assert [t["id"] for t in due] == ids
    assert [t["payload"] for t in due] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_an_unknown_type_is_refused_and_nothing_is_queued(inproc):
    with pytest.raises(BadRequest, match="unknown task type"):
        queue(inproc.state, [NODE_A], "make_coffee")
    assert inproc.state.store.read("tasks") == {}


def test_a_delivered_task_without_a_result_comes_back_after_60_s(inproc):
    state, clock = inproc.state, inproc.clock
    [task_id] = queue(state, [NODE_A], "noop")
    assert [t["id"] for t in tasks.fetch(state, NODE_A, 0)] == [task_id]
    clock.now += tasks.REDELIVER_AFTER_SEC  # not yet: exactly at the limit
    assert tasks.fetch(state, NODE_A, 0) == []
    clock.now += 1
    assert [t["id"] for t in tasks.fetch(state, NODE_A, 0)] == [task_id]
    assert state.store.read("tasks")[task_id]["attempts"] == 2
    tasks.report(state, NODE_A, task_id, "succeeded", "ok")
    clock.now += 10 * tasks.REDELIVER_AFTER_SEC
    assert tasks.fetch(state, NODE_A, 0) == []  # a finished task never comes back


def test_a_result_is_recorded_once_and_only_by_its_node(inproc):
    state = inproc.state
    [task_id] = queue(state, [NODE_A], "noop")
    tasks.fetch(state, NODE_A, 0)
    with pytest.raises(NotFound):
        tasks.report(state, NODE_B, task_id, "failed", "not mine")
    assert tasks.report(state, NODE_A, task_id, "succeeded", "ok")["status"] == "succeeded"
    again = tasks.report(state, NODE_A, task_id, "failed", "late duplicate")
    assert (again["status"], again["output"]) == ("succeeded", "ok")


def test_the_payload_is_rendered_at_delivery_not_at_queueing(inproc):
    state = inproc.state
    state.task_types["probe"] = tasks.TaskType(
        "probe", lambda st, node_id, payload: {**payload, "rendered_at": st.now()})
    queue(state, [NODE_A], "probe", {"x": 1})
    inproc.clock.now += 30
    seen = tasks.fetch(state, NODE_A, 0)
    assert seen[0]["payload"] == {"x": 1, "rendered_at": inproc.clock.now}


def _wait_until(predicate, what):
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_long_polls_are_capped_and_woken_by_a_new_task(inproc):
    state = inproc.state
    state.config.threads = 10  # the cap is threads - max(8, threads / 4) = 2 long-polls
    results: dict[str, list] = {}

    def poll(node_id):
        results[node_id] = tasks.fetch(state, node_id, 60)

    pollers = [threading.Thread(target=poll, args=(n,)) for n in (NODE_A, NODE_B)]
    for t in pollers:
        t.start()
    _wait_until(lambda: state.waiters.waiting == 2, "two waiting long-polls")
    with pytest.raises(Throttled) as refused:
        tasks.fetch(state, "node-000000000000000c", 60)
    assert refused.value.retry_after == state.config.long_poll_sec
    assert tasks.fetch(state, "node-000000000000000c", 0) == []  # a plain poll still works
    [task_id] = queue(state, [NODE_A], "noop")
    pollers[0].join(30)
    assert [t["id"] for t in results[NODE_A]] == [task_id]
    state.waiters.close()  # what shutdown does: every remaining long-poll returns at once
    pollers[1].join(30)
    assert results[NODE_B] == [] and state.waiters.waiting == 0
