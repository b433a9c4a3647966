"""End-to-end: running a stack day to day on a 3-node `lab --docker` (issue 22).

A busybox stack prints `hello-${GREETING}` and a tick a second, deployed with
`--env GREETING=…`: `service logs` shows the substituted greeting and the ticks,
`--follow` shows new ticks as they come, `scale` to 3 gives 3 running tasks on 3 nodes,
`stop` 0 with the stack still listed, `start` 3 again; `node logs` shows an agent's own
lines. The env value is in no log, audit line, store file or argv of the control plane
or the agents. Tests run in file order on one lab.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.swarmlab import SwarmLab, swarm_lab
from tests.e2e.test_lab import DATA_ROOT, env, nimbus_cmd

pytestmark = pytest.mark.root

GREETING = "gr33t-" + secrets.token_hex(6)  # a stand-in for a password
COMPOSE = """\
services:
  ticker:
    image: nimbus-lab/busybox:latest
    command:
      - sh
      - -c
      - echo hello-${GREETING}; i=0; while true; do echo tick-$$i; i=$$((i+1)); sleep 1; done
    deploy:
      replicas: 1
      endpoint_mode: dnsrr      # the lab kernel has no IPVS
      placement: {max_replicas_per_node: 1}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[SwarmLab]:
    yield from swarm_lab()


def wait_for(check: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def running_tasks(lab: SwarmLab) -> list[dict[str, Any]]:
    out = lab.cli("service", "describe", "tick")
    return [t for t in out["tasks"] if t["desired"] == "running" and t["state"] == "running"]


def test_deploy_with_env_and_read_the_logs(lab: SwarmLab, tmp_path: Path):
    lab.cli("swarm", "create", "--name", "ops")
    for n in ("n1", "n2", "n3"):
        lab.cli("swarm", "add-node", "--swarm", "ops", "--node", n)
    stack = tmp_path / "tick.yml"
    stack.write_text(COMPOSE)
    missing = lab.run("service", "deploy", "--swarm", "ops", "--file", str(stack), "--name",
                      "tick", check=False)
    assert missing.returncode != 0 and "GREETING" in missing.stderr  # named, one line
    assert len(missing.stderr.strip().splitlines()) == 1
    lab.cli("service", "deploy", "--swarm", "ops", "--file", str(stack), "--name", "tick",
            "--env", f"GREETING={GREETING}")
    wait_for(lambda: running_tasks(lab), "the ticker to run")
    out = wait_for(lambda: (lambda o: o if "tick-2" in o else None)(
        lab.run("service", "logs", "tick", "--tail", "200").stdout), "ticks in the log")
    assert f"hello-{GREETING}" in out
    first = out.splitlines()[0]
    assert first.startswith("ticker.1@n") and " | " in first  # service, replica, node


def test_follow_shows_new_ticks(lab: SwarmLab):
    argv = [*nimbus_cmd(), "lab", "cli", "--id", lab.id, "--", "service", "logs", "tick",
            "--follow", "--tail", "1", "--timestamps"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(), start_new_session=True)
    ticks: list[int] = []
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while len(ticks) < 4 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "| tick-" in line:
                ticks.append(int(line.rsplit("tick-", 1)[1]))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert len(ticks) >= 4 and ticks == sorted(set(ticks)), ticks  # new ones, no repeats


def test_scale_stop_start(lab: SwarmLab):
    lab.cli("service", "scale", "tick", "ticker=3")
    tasks = wait_for(lambda: (lambda t: t if len(t) == 3 else None)(running_tasks(lab)),
                     "3 running tasks")
    assert sorted(t["node"] for t in tasks) == ["n1", "n2", "n3"]
    huge = lab.run("service", "scale", "tick", "ticker=100000", check=False)
    assert huge.returncode != 0 and "between 0 and 100" in huge.stderr
    unknown = lab.run("service", "scale", "tick", "nope=1", check=False)
    assert unknown.returncode != 0 and "no service 'nope'" in unknown.stderr
    stopped = lab.cli("service", "stop", "tick")
    assert stopped["status"] == "stopped"
    wait_for(lambda: lab.cli("service", "describe", "tick")["running"] == 0 or None,
             "0 running after stop")
    assert [s["name"] for s in lab.cli("service", "list")] == ["tick"]
    lab.cli("service", "start", "tick")
    wait_for(lambda: len(running_tasks(lab)) == 3 or None, "3 running after start")


def test_node_logs_show_the_agents_own_lines(lab: SwarmLab):
    out = lab.run("node", "logs", "n1", "--tail", "50").stdout
    assert "nimbus.agent" in out and "task " in out


def test_the_env_value_is_nowhere_on_the_control_plane_or_the_agents(lab: SwarmLab):
    root = DATA_ROOT / lab.id
    places = [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".tar")
              and "docker" not in p.relative_to(root).parts
              and not p.name.endswith("-docker.log")]
    assert any(p.name == "audit.log" for p in places) and places
    hits = [str(p) for p in places if GREETING.encode() in p.read_bytes()]
    assert hits == []
    ours = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"nimbus" in argv and (b"serve" in argv or b"agent" in argv):
            ours.append(argv)
    assert ours and not any(GREETING.encode() in a for a in ours)
    assert not any(GREETING in o for o in lab.outputs if "hello-" not in o)
