"""A swarm manager that never answers must not stall anybody (issue 23, item 3).

Reads of swarms and stacks used to wait up to 10 s for the manager inside a server worker:
70 concurrent describes froze every client. Now a read answers at once from the last known
state and queues at most one refresh per object; log reads are fetches the client polls.
Here a read-only user and an admin hammer describes and log reads while the manager's agent
heartbeats but never runs a task, and a signed `GET /v1/nodes` must still be answered well
before the old 10 s read timeout (no tight timing bound: this machine is shared).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from nimbus.client import ApiClient
from nimbus.errors import NimbusError, Throttled
from tests.harness import Cli, bootstrap_admin
from tests.security.helpers import add_node, join, operator, store_doc

DOCKER = {"version": "20.10.24", "swarm_state": "active", "swarm_node_id": "a" * 25}
READERS = 40
OLD_READ_TIMEOUT = 10.0


class SilentManager:
    """Heartbeats all along; answers tasks only until `silent` is set."""

    def __init__(self, client: ApiClient, beat: ApiClient, node_id: str) -> None:
        self.client, self.beat, self.node_id = client, beat, node_id
        self.silent, self.stop = threading.Event(), threading.Event()
        for fn in (self._beat, self._answer):
            threading.Thread(target=fn, daemon=True).start()

    def _beat(self) -> None:
        while not self.stop.wait(0.5):
            self.beat.request("POST", "/v1/internal/heartbeat",
                              {"agent_version": "0.1.0", "docker": DOCKER})

    def _answer(self) -> None:
        replies = {"swarm.init": {"swarm_node_id": "a" * 25, "swarm_id": "c" * 25},
                   "swarm.inspect": {"nodes": [], "services": []},
                   "stack.deploy": {"services": [{"name": "app", "image": "busybox",
                                                  "running": 1, "desired": 1}]}}
        while not self.silent.is_set():
            for task in self.client.request("GET", f"/v1/internal/tasks/{self.node_id}?wait=1"):
                self.client.request("POST", f"/v1/internal/tasks/{task['id']}/result", {
                    "status": "succeeded",
                    "output": json.dumps(replies.get(task["type"], {}))})


def _hammer(client: ApiClient, paths: list[str], took: list[float], errors: list[str]) -> None:
    for _ in range(3):
        for path in paths:
            started = time.monotonic()
            try:
                client.request("GET", path)
            except NimbusError as exc:
                errors.append(str(exc))
            took.append(time.monotonic() - started)


def _log_reads(client: ApiClient, took: list[float], errors: list[str]) -> None:
    for _ in range(3):
        started = time.monotonic()
        try:
            opened = client.request("POST", "/v1/services/web/logs", {"tail": 5})
            client.request("GET", f"/v1/services/web/logs/{opened['id']}?cursor=0")
        except Throttled:
            pass  # past the cap of open reads: a clean 429 is a fine answer
        except NimbusError as exc:
            errors.append(str(exc))
        took.append(time.monotonic() - started)


def test_reads_never_wait_for_a_silent_manager(server_factory: Any, cli: Cli, tmp_path: Path):
    server = server_factory({"heartbeat_interval_sec": 2, "threads": 16})
    ops = operator(server, bootstrap_admin(server, cli))
    _, fields, _ = add_node(ops, name="m1")
    joined = join(server, fields, tmp_path)
    mgr = SilentManager(joined.client(server), joined.client(server), joined.node_id)
    try:
        time.sleep(1)  # first heartbeat: ready
        ops.request("POST", "/v1/swarms", {"name": "alpha"})
        ops.request("POST", "/v1/swarms/alpha/nodes", {"node": "m1"})
        ops.request("POST", "/v1/services", {"name": "web", "swarm": "alpha", "compose": {
            "services": {"app": {"image": "busybox"}}}})
        mgr.silent.set()
        time.sleep(1.5)  # its last long-poll has ended: from now on nothing answers
        user = ops.request("POST", "/v1/iam/users", {"username": "reader"})
        key = ops.request("POST", f"/v1/iam/users/{user['id']}/keys", {})
        took: list[float] = []
        errors: list[str] = []
        threads = [threading.Thread(target=_hammer, args=(
            operator(server, key), ["/v1/services/web", "/v1/swarms/alpha"], took, errors))
            for _ in range(READERS)]
        threads += [threading.Thread(target=_log_reads, args=(
            operator(server, _admin_key(ops)), took, errors)) for _ in range(8)]
        for t in threads:
            t.start()
        started = time.monotonic()
        nodes = ops.request("GET", "/v1/nodes")
        listing = time.monotonic() - started
        for t in threads:
            t.join(120)
    finally:
        mgr.stop.set()
        mgr.silent.set()
    assert [n["name"] for n in nodes] == ["m1"]
    assert listing < OLD_READ_TIMEOUT / 2, listing
    assert errors == [] and len(took) == READERS * 6 + 8 * 3
    assert max(took) < OLD_READ_TIMEOUT / 2, sorted(took)[-5:]
    described = ops.request("GET", "/v1/services/web")
    assert described["refreshing"] is True and described["running"] == 1  # last known
    unfinished = [t for t in store_doc(server, "tasks").values()
                  if t["type"] == "swarm.inspect" and t["status"] in ("pending", "delivered")]
    assert len(unfinished) == 2, unfinished  # one per object however many reads came


def _admin_key(ops: ApiClient) -> dict[str, str]:
    """A second key of the admin, for the log readers (their own HMAC nonces)."""
    me = next(u for u in ops.request("GET", "/v1/iam/users") if u["admin"])
    return ops.request("POST", f"/v1/iam/users/{me['id']}/keys", {})
