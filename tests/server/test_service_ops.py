"""Day-2 operations of stacks in-process: env substitution sealed at rest, scale/stop/start,
describe from the last known state, log reads through fetches, hostile manager reports.

A thread plays the manager's agent through the real queue (tasks.fetch / tasks.report),
so render hooks and result hooks run exactly as with a real agent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nimbus.errors import BadRequest, Conflict, NotFound
from nimbus.server import heartbeat, nodelogs, tasks
from nimbus.server.swarm import logs, services, views

DOCKER = {"version": "20.10.24", "swarm_state": "active", "swarm_node_id": "a" * 25}
SECRET = "s3cr3t-p4ss"
COMPOSE = {"services": {
    "app": {"image": "busybox", "command": ["sh", "-c", "echo hello-${GREETING}; echo $$HOME"],
            "deploy": {"replicas": 1}},
    "agent": {"image": "busybox", "deploy": {"mode": "global"}}}}
Reply = Callable[[dict[str, Any]], tuple[str, Any]]


class Manager:
    """The manager's agent: answers every task with reply(task) until stopped."""

    def __init__(self, state: Any, node_id: str, reply: Reply) -> None:
        self.state, self.node_id, self.reply = state, node_id, reply
        self.seen: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for task in tasks.fetch(self.state, self.node_id, 0.2):
                self.seen.append(task)
                status, out = self.reply(task)
                tasks.report(self.state, self.node_id, task["id"], status,
                             out if isinstance(out, str) else json.dumps(out))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def default_reply(task: dict[str, Any]) -> tuple[str, Any]:
    if task["type"] == "stack.deploy":
        return "succeeded", {"services": [{"name": "app", "image": "busybox",
                                           "running": 1, "desired": 1}]}
    return "succeeded", {}


@pytest.fixture
def stack(inproc: Any) -> Iterator[tuple[Any, str]]:
    """A ready manager node in swarm `alpha` (records written directly)."""
    state = inproc.state
    node_id, _ = inproc.joined_node()
    heartbeat.heartbeat(state, node_id, {"agent_version": "0.1.0", "docker": DOCKER})
    with state.store.transaction("swarms") as tx:
        tx["swarms"]["swarm-1"] = {
            "id": "swarm-1", "name": "alpha", "created_at": 1.0, "manager": node_id,
            "members": {node_id: {"role": "manager", "swarm_node_id": "a" * 25,
                                  "added_at": 1.0}},
            "tokens": {}, "seen": {}, "refreshed_at": None}
    yield state, node_id


def deployed(task: dict[str, Any]) -> dict[str, Any]:
    return task["payload"]["compose"]


def test_env_is_substituted_at_delivery_and_sealed_at_rest(stack, tmp_path):
    state, node_id = stack
    m = Manager(state, node_id, default_reply)
    try:
        services.deploy(state, "web", "alpha", COMPOSE, "user-x", env={"GREETING": SECRET})
        services.deploy(state, "web", "alpha", COMPOSE, "user-x")  # env kept
    finally:
        m.close()
    sent = [deployed(t) for t in m.seen if t["type"] == "stack.deploy"]
    assert len(sent) == 2
    for compose in sent:  # $ escaped again for Docker's own pass: $$ stays literal
        assert compose["services"]["app"]["command"][2] == f"echo hello-{SECRET}; echo $$HOME"
    rec = state.store.read("services")["web"]
    assert rec["env_keys"] == ["GREETING"] and rec["env"].startswith("enc1:")
    stored = b"".join(p.read_bytes() for p in state.data_dir.rglob("*") if p.is_file())
    assert SECRET.encode() not in stored  # store, tasks.json, audit.log


def test_an_unset_variable_is_refused_naming_it(stack):
    state, _ = stack
    with pytest.raises(BadRequest, match="GREETING") as err:
        services.deploy(state, "web", "alpha", COMPOSE, "user-x")
    assert "--env GREETING=" in str(err.value)
    with pytest.raises(BadRequest, match="not a name"):
        services.deploy(state, "web", "alpha", COMPOSE, "user-x", env={"1x": SECRET})
    assert state.store.read("services") == {}


def test_a_failed_deploy_does_not_echo_an_env_value(stack):
    state, node_id = stack
    m = Manager(state, node_id, lambda t: ("failed", f"invalid value {SECRET} for replicas"))
    try:
        with pytest.raises(Conflict) as err:
            services.deploy(state, "web", "alpha", COMPOSE, "u", env={"GREETING": SECRET})
    finally:
        m.close()
    assert SECRET not in str(err.value) and "***" in str(err.value)


def test_scale_stop_start_keep_the_counts(stack):
    state, node_id = stack
    m = Manager(state, node_id, default_reply)
    try:
        services.deploy(state, "web", "alpha", COMPOSE, "u", env={"GREETING": "hi"})
        services.scale(state, "web", {"app": 3}, "u")
        stopped = services.stop(state, "web", "u")
        services.start(state, "web", "u")
    finally:
        m.close()
    sent = [deployed(t)["services"] for t in m.seen if t["type"] == "stack.deploy"]
    assert [s["app"]["deploy"]["replicas"] for s in sent] == [1, 3, 0, 3]
    assert "constraints" in sent[2]["agent"]["deploy"]["placement"]  # global: no node fits
    assert "placement" not in sent[3]["agent"]["deploy"]
    assert stopped["status"] == "stopped" and stopped["scaled"] == {"app": 3}


@pytest.mark.parametrize("wanted, error", [
    ({"nope": 1}, "no service 'nope'"), ({"agent": 2}, "global"),
    ({"app": 100_000}, "from 0 to"), ({"app": "3"}, "whole number")])
def test_scale_refusals_are_one_line(stack, wanted, error):
    state, node_id = stack
    m = Manager(state, node_id, default_reply)
    try:
        services.deploy(state, "web", "alpha", COMPOSE, "u", env={"GREETING": "hi"})
        with pytest.raises(BadRequest, match=error):
            services.scale(state, "web", wanted, "u")
    finally:
        m.close()
    with pytest.raises(NotFound):
        services.scale(state, "nothere", {"app": 1}, "u")


def test_no_ready_manager_is_refused_at_once(stack, inproc):
    state, _ = stack
    inproc.clock.now += 3600  # no heartbeat for an hour: offline
    with pytest.raises(Conflict, match="no ready manager"):
        services.deploy(state, "web", "alpha", COMPOSE, "u", env={"GREETING": "hi"})


def _inspects(state: Any) -> list[dict[str, Any]]:
    return [t for t in state.store.read("tasks").values() if t["type"] == "swarm.inspect"]


def test_describe_answers_at_once_and_coalesces_refreshes(stack, inproc):
    state, node_id = stack
    m = Manager(state, node_id, default_reply)
    try:
        services.deploy(state, "web", "alpha", COMPOSE, "u", env={"GREETING": "hi"})
    finally:
        m.close()
    for _ in range(20):  # nobody answers: every read is immediate, one inspect is queued
        out = views.describe_stack(state, "web")
        assert out["refreshing"] is True and out["running"] == 1
        views.describe_swarm(state, "alpha")
    assert len(_inspects(state)) == 2  # one for the stack, one for the swarm


def test_a_hostile_managers_report_is_cleaned_not_a_500(stack, inproc):
    state, node_id = stack
    hostile = {"nodes": [{"swarm_node_id": "a" * 25, "state": {"x": 1}}, "junk"],
               "services": [{"name": "app", "running": "lots", "desired": 1e300},
                            {"name": "\x1b[31mred", "running": True, "desired": -5}, 7],
               "tasks": [{"service": "app", "replica": "one", "state": "pwned",
                          "error": "e" * 5000}, None]}
    m = Manager(state, node_id, lambda t: ("succeeded", hostile if t["type"] ==
                                           "swarm.inspect" else default_reply(t)[1]))
    try:
        services.deploy(state, "web", "alpha", COMPOSE, "u", env={"GREETING": "hi"})
        views.describe_stack(state, "web")
        for _ in range(50):
            if not any(t["status"] != "succeeded" for t in _inspects(state)):
                break
            threading.Event().wait(0.1)
    finally:
        m.close()
    out = views.describe_stack(state, "web")
    assert [(s["running"], s["desired"]) for s in out["services"]] == [(0, 0), (0, 0)]
    assert out["services"][1]["name"] == "?[31mred"
    assert out["tasks"][0]["state"] == "unknown" and len(out["tasks"][0]["error"]) == 300


def log_reply(lines: list[dict[str, Any]]) -> Reply:
    def reply(task: dict[str, Any]) -> tuple[str, Any]:
        if task["type"] == "stack.logs":
            return "succeeded", {"lines": lines, "truncated": False, "now": "1800000000.5"}
        return default_reply(task)
    return reply


def line(t: str, text: str) -> dict[str, Any]:
    return {"time": f"2026-12-03T09:28:{t}Z", "service": "app", "replica": 1, "node": "n1",
            "node_id": "a" * 25, "task_id": "t" * 25, "stream": "stdout", "text": text}


def test_logs_go_to_the_reader_never_to_the_task_store(stack):
    state, node_id = stack
    m = Manager(state, node_id, log_reply([line("01.000000001", f"hello-{SECRET}"),
                                           line("02.000000001", "tick 1")]))
    try:
        services.deploy(state, "web", "alpha", COMPOSE, "u", env={"GREETING": SECRET})
        opened = logs.start(state, "web", "user-a", tail=10)
        with pytest.raises(NotFound):  # another user cannot read it
            logs.read(state, "web", opened["id"], "user-b", 0)
        got = _read_until_done(state, opened["id"], "user-a")
    finally:
        m.close()
    assert [x["text"] for x in got] == [f"hello-{SECRET}", "tick 1"]
    name = state.store.read("nodes")[node_id]["name"]
    assert got[0]["node"] == name and got[0]["replica"] == 1  # a member: its Nimbus name
    assert SECRET not in json.dumps(state.store.read("tasks"))
    with pytest.raises(NotFound):  # read to the end: gone, off the caps
        logs.read(state, "web", opened["id"], "user-a", 0)
    with pytest.raises(NotFound, match="no service"):
        logs.start(state, "web", "user-a", service="db")


def _read_until_done(state: Any, fetch_id: str, actor: str) -> list[dict[str, Any]]:
    lines, cursor = [], 0
    for _ in range(100):
        out = logs.read(state, "web", fetch_id, actor, cursor)
        lines += out["lines"]
        cursor = out["cursor"]
        if out["done"]:
            return lines
        threading.Event().wait(0.05)
    raise AssertionError(f"the log read never finished: {lines}")


def test_follow_rounds_continue_from_the_newest_line_without_repeats(stack):
    state, node_id = stack
    rounds = [[line("01.1", "a"), line("02.5", "b")],
              [line("02.5", "b"), line("03.0", "c")],  # since is inclusive
              []]

    def reply(task: dict[str, Any]) -> tuple[str, Any]:
        if task["type"] != "stack.logs":
            return default_reply(task)
        batch = rounds.pop(0) if rounds else []
        return "succeeded", {"lines": batch, "truncated": False, "now": "1800000009.0"}

    m = Manager(state, node_id, reply)
    try:
        services.deploy(state, "web", "alpha", COMPOSE, "u", env={"GREETING": "x"})
        opened = logs.start(state, "web", "u", follow=True)
        seen: list[str] = []
        cursor = 0
        for _ in range(100):
            out = logs.read(state, "web", opened["id"], "u", cursor)
            seen += [x["text"] for x in out["lines"]]
            cursor = out["cursor"]
            if len([t for t in m.seen if t["type"] == "stack.logs"]) >= 4:
                break
            threading.Event().wait(0.05)
        logs.close(state, opened["id"], "u")
    finally:
        m.close()
    assert seen == ["a", "b", "c"]
    payloads = [t["payload"] for t in m.seen if t["type"] == "stack.logs"]
    assert payloads[0]["tail"] == 100 and payloads[0]["follow_sec"] == 0
    assert payloads[1]["since"] == "2026-12-03T09:28:02.5Z" and payloads[1]["follow_sec"] > 0
    assert payloads[3]["since"] == "2026-12-03T09:28:03.0Z"


def test_node_logs_come_back_through_a_fetch(stack):
    state, node_id = stack
    m = Manager(state, node_id, lambda t: ("succeeded", {"lines": ["one", "two\x1b[0m"]}))
    try:
        opened = nodelogs.start(state, node_id, "u", tail=5)
        for _ in range(100):
            out = nodelogs.read(state, node_id, opened["id"], "u", 0)
            if out["done"]:
                break
            threading.Event().wait(0.05)
    finally:
        m.close()
    assert out["lines"] == ["one", "two?[0m"]
    assert m.seen[0]["payload"]["tail"] == 5


def test_a_hostile_deploy_answer_is_cleaned_too(stack):
    state, node_id = stack
    m = Manager(state, node_id, lambda t: ("succeeded", {"services": [
        {"name": "app", "running": "NaN", "desired": [1]}, {"running": 2 ** 70}]}))
    try:
        out = services.deploy(state, "web", "alpha", COMPOSE, "u", env={"GREETING": "x"})
    finally:
        m.close()
    assert [(s["running"], s["desired"]) for s in out["services"]] == [(0, 0), (100_000, 0)]
