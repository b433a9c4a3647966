"""Service log streams, stack inspection rows and replica overrides as data (pure)."""

from __future__ import annotations

import struct

import pytest

from nimbus.docker import inspect, replicas
from nimbus.docker import logs as logstream

ATTRS = ("com.docker.swarm.node.id=nodeA,com.docker.swarm.service.id=svc1,"
         "com.docker.swarm.task.id=task1")


def frame(stream: int, text: str) -> bytes:
    data = text.encode()
    return struct.pack(">BxxxL", stream, len(data)) + data


def test_demux_and_parse_lines_of_a_multiplexed_stream():
    raw = (frame(1, f"2026-12-03T09:28:20.649846050Z {ATTRS} hello world\n")
           + frame(2, f"2026-12-03T09:28:21.000000000Z {ATTRS} oops\n"))
    frames, rest = logstream.demux(raw + raw[:5])  # a partial frame waits for more
    assert rest == raw[:5] and len(frames) == 2
    lines = logstream.label(logstream.lines(frames), {"task1": {"Slot": 2}},
                            {"nodeA": "n1"}, "web")
    assert [(x["stream"], x["text"], x["replica"], x["node"]) for x in lines] == [
        ("stdout", "hello world", 2, "n1"), ("stderr", "oops", 2, "n1")]


def test_a_tty_stream_is_raw_stdout():
    frames, _ = logstream.demux(b"2026-12-03T09:28:20Z  plain\n")
    assert frames == [(1, b"2026-12-03T09:28:20Z  plain\n")]


def test_newest_within_keeps_the_newest_lines():
    items = [{"time": f"2026-12-03T09:28:{i:02d}Z", "text": "x" * 100} for i in range(50)]
    kept, truncated = logstream.newest_within(items, 2000)
    assert truncated and kept[-1]["time"].endswith("49Z") and len(kept) < 50


@pytest.mark.parametrize("value, want", [
    ("10m", f"{1000.0 - 600:.9f}"), ("1h1s", "0.000000000"), ("1700000000.5", "1700000000.5"),
    ("2026-12-03T09:28:20.5Z", "1796290100.500000000")])
def test_since_arguments(value, want):
    assert logstream.since_arg(value, 1000.0) == want


@pytest.mark.parametrize("bad", ["yesterday", "10 m", "-5s", "2026-12-03 09:28:20", ""])
def test_bad_since_is_refused(bad):
    with pytest.raises(ValueError, match="duration"):
        logstream.check_since(bad)


def test_summarize_and_task_rows_from_engine_objects():
    image = {"ContainerSpec": {"Image": "b:1@sha256:x"}}
    services = [{"ID": "s1", "Spec": {"Name": "web_app", "Mode": {"Replicated": {"Replicas": 3}},
                                      "TaskTemplate": image}},
                {"ID": "s2", "Spec": {"Name": "web_agent", "Mode": {"Global": {}}}}]
    tasks = [{"ID": "t1", "ServiceID": "s1", "Slot": 1, "NodeID": "n", "DesiredState": "running",
              "Status": {"State": "running", "Timestamp": "2"}},
             {"ID": "t0", "ServiceID": "s1", "Slot": 1, "NodeID": "n", "DesiredState": "shutdown",
              "Status": {"State": "failed", "Err": "exit 1", "Timestamp": "1"}},
             {"ID": "t2", "ServiceID": "s2", "NodeID": "n", "DesiredState": "running",
              "Status": {"State": "running"}}]
    assert inspect.summarize(services, tasks, "web") == [
        {"name": "agent", "image": "", "mode": "global", "running": 1, "desired": 1},
        {"name": "app", "image": "b:1", "mode": "replicated", "running": 1, "desired": 3}]
    rows = inspect.task_rows(tasks, services, {"n": "n1"}, "web")
    assert [(r["service"], r["state"], r["node"]) for r in rows] == [
        ("agent", "running", "n1"), ("app", "running", "n1"), ("app", "failed", "n1")]


def test_counts_from_a_report_are_validated():
    assert [inspect.count(v) for v in (3, "3", True, -1, 10**9, None, 2.5)] == [
        3, 0, 0, 0, 100_000, 0, 0]


def test_replicas_parse_check_apply():
    assert replicas.parse(["web=3", "db=0"]) == {"web": 3, "db": 0}
    for bad in (["web"], ["web=-1"], ["web=x"], []):
        with pytest.raises(ValueError):
            replicas.parse(bad)
    compose = {"services": {"web": {"image": "b"}, "g": {"image": "b",
                                                          "deploy": {"mode": "global"}}}}
    with pytest.raises(ValueError, match="from 0 to 100"):
        replicas.check(compose, {"web": 101}, "s")
    out = replicas.apply(compose, {"web": 4}, stopped=False)
    assert out["services"]["web"]["deploy"]["replicas"] == 4 and "deploy" not in compose[
        "services"]["web"]
    assert replicas.declared(compose, {"web": 4}) == {"web": 4, "g": "global"}
