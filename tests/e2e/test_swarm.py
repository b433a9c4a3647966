"""End-to-end: a Docker Swarm of three lab nodes, formed and used through `nimbus`, over WireGuard.

`nimbus lab up --nodes 3 --docker` gives every node its own dockerd and a local busybox
image. The scenario: swarm create, add the three nodes, deploy a 3-replica busybox httpd
stack on an overlay network (one replica per node), fetch every replica from a container
on n1, while tcpdump on every member's underlay sees no Swarm traffic (2377, 7946, 4789)
and on n1's WireGuard interface does. Then `node delete` of a worker takes it out of the
swarm and `swarm delete` leaves no swarm behind. Tests run in file order on one lab.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.swarmlab import SwarmLab, swarm_lab
from tests.e2e.test_lab import DATA_ROOT, leftovers, nimbus, wait_clean

pytestmark = pytest.mark.root

SWARM_FILTER = "port 2377 or port 7946 or port 4789"
STACK = "web1"
REPLICAS = 3
# $$ is compose's escape for a literal $ (docker stack deploy interpolates variables).
COMPOSE = """\
services:
  web:
    image: nimbus-lab/busybox:latest
    command:
      - sh
      - -c
      - >-
        mkdir -p /tmp/www && i=0 &&
        while [ $$i -lt 80 ]; do
        echo "$$(hostname) serves line $$i of the nimbus swarm test page"; i=$$((i+1));
        done > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www
    networks: [back]
    deploy:
      replicas: 3
      endpoint_mode: dnsrr      # the lab kernel has no IPVS
      placement:
        max_replicas_per_node: 1
networks:
  back:
    attachable: true
"""
# Run in a busybox container on n1: resolve every replica, fetch each by IP (busybox wget
# of a name crashes with the glibc-static busybox, so names go through nslookup).
FETCH = """
ips=$(nslookup tasks.web 2>/dev/null | awk '/^Name:/{n=1; next} n && /^Address/{print $NF; n=0}')
for ip in $ips; do
  wget -q -O /tmp/page "http://$ip/" || { echo "$ip FAILED"; continue; }
  echo "$ip $(wc -c < /tmp/page) $(sed -n 1p /tmp/page)"
done
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[SwarmLab]:
    yield from swarm_lab()


class Capture:
    """tcpdump (of Swarm ports unless `bpf`) on one interface of one namespace, to a file (a pipe
    nobody reads fills up and stalls tcpdump, which then misses packets)."""

    def __init__(self, netns: str, interface: str, directory: Path,
                 bpf: str = SWARM_FILTER) -> None:
        self.where = f"{netns}/{interface}"
        self.out = directory / f"{netns}-{interface}.txt"
        err = directory / f"{netns}-{interface}.err"
        with open(self.out, "w") as out, open(err, "w") as errf:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", netns, "tcpdump", "-n", "-l", "-i", interface,
                 bpf], stdout=out, stderr=errf, text=True)
        deadline = time.monotonic() + 15
        while "listening on" not in err.read_text() and time.monotonic() < deadline:
            assert self.proc.poll() is None, err.read_text()
            time.sleep(0.05)

    def stop(self) -> list[str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return [ln for ln in self.out.read_text().splitlines() if ln.strip()]


def test_lab_docker_gives_every_node_its_own_engine_and_the_image(lab: SwarmLab):
    st = lab.status()
    assert st["docker_image"] == "nimbus-lab/busybox:latest"
    hosts = {n["docker_host"] for n in st["nodes"]}
    assert len(hosts) == 3 and all(h.startswith("unix:///run/nimbus-lab/") for h in hosts)
    for n in st["nodes"]:
        info = json.loads(lab.docker(n["name"], "info", "--format", "{{json .}}").stdout)
        assert info["Name"] == n["name"]  # its own UTS namespace
        assert info["Driver"] == "vfs"
        assert info["Swarm"]["LocalNodeState"] == "inactive"
        images = lab.docker(n["name"], "images", "--format", "{{.Repository}}:{{.Tag}}")
        assert "nimbus-lab/busybox:latest" in images.stdout.split()
    # The agents report their engine in the heartbeat.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        described = [lab.cli("node", "describe", name) for name in ("n1", "n2", "n3")]
        if all(d.get("docker") for d in described):
            break
        time.sleep(1)
    for d in described:
        assert d["docker"]["swarm_state"] == "inactive", d.get("docker")
        assert d["docker"]["version"]


def test_swarm_of_three_runs_a_stack_reachable_only_through_wireguard(lab: SwarmLab,
                                                                      tmp_path: Path):
    nodes = lab.nodes()
    underlay = [Capture(n["netns"], "eth0", tmp_path) for n in nodes.values()]
    overlay = Capture(nodes["n1"]["netns"], nodes["n1"]["interface"], tmp_path)
    try:
        created = lab.cli("swarm", "create", "--name", "alpha")
        assert created["id"].startswith("swarm-") and created["nodes"] == []
        first = lab.cli("swarm", "add-node", "--swarm", "alpha", "--node", "n1")
        assert first["manager"] == nodes["n1"]["id"]
        lab.cli("swarm", "add-node", "--swarm", created["id"], "--node", "n2")
        lab.cli("swarm", "add-node", "--swarm", "alpha", "--node", nodes["n3"]["id"])
        desc = lab.cli("swarm", "describe", "alpha")
        assert desc["status"] == "active" and desc["manager"] == nodes["n1"]["id"]
        roles = {m["name"]: (m["role"], m["state"]) for m in desc["nodes"]}
        assert roles == {"n1": ("manager", "ready"), "n2": ("worker", "ready"),
                         "n3": ("worker", "ready")}, desc

        compose = tmp_path / "compose.yml"
        compose.write_text(COMPOSE)
        lab.cli("service", "deploy", "--swarm", "alpha", "--file", str(compose),
                "--name", STACK)
        svc = wait_running(lab, STACK, REPLICAS)
        assert svc["swarm"] == "alpha"
        assert svc["services"] == [{"name": "web", "image": "nimbus-lab/busybox:latest",
                                    "mode": "replicated", "running": 3, "desired": 3}]
        for name in nodes:  # one replica per node
            ps = lab.docker(name, "ps", "-q", "--filter",
                            f"label=com.docker.stack.namespace={STACK}")
            assert len(ps.stdout.split()) == 1, (name, ps.stdout, ps.stderr)
        mtu = lab.docker("n1", "network", "inspect", f"{STACK}_back", "--format",
                         '{{index .Options "com.docker.network.driver.mtu"}}')
        assert mtu.stdout.strip() == "1370", mtu.stderr
        ingress = lab.docker("n1", "network", "inspect", "ingress", "--format",
                             '{{index .Options "com.docker.network.driver.mtu"}}')
        assert ingress.stdout.strip() == "1370"

        fetched = lab.docker("n1", "run", "--rm", "--network", f"{STACK}_back",
                             "nimbus-lab/busybox:latest", "sh", "-c", FETCH, timeout=120)
        rows = [ln.split(" ", 2) for ln in fetched.stdout.splitlines() if ln.strip()]
        assert len(rows) == REPLICAS, (fetched.stdout, fetched.stderr)
        assert all(int(size) > 3000 for _, size, *_ in rows), rows
        assert len({first_line.split()[0] for *_, first_line in rows}) == REPLICAS, rows
    finally:
        leaked = {c.where: c.stop() for c in underlay}
        tunnelled = overlay.stop()
    assert {w: lines for w, lines in leaked.items() if lines} == {}
    assert tunnelled, "no Swarm traffic seen on n1's WireGuard interface: capture broken?"
    ports = " ".join(tunnelled)
    assert ".2377" in ports and ".7946" in ports and ".4789" in ports, tunnelled[:20]


def wait_running(lab: SwarmLab, name: str, replicas: int, timeout: float = 180,
                 ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        svc = lab.cli("service", "describe", name)
        if svc["running"] == replicas == svc["desired"] or time.monotonic() > deadline:
            assert svc["running"] == replicas, svc
            return svc
        time.sleep(1)


def test_service_list_and_the_token_is_never_shown_or_stored_in_clear(lab: SwarmLab):
    listed = lab.cli("service", "list", "--swarm", "alpha")
    assert [s["name"] for s in listed] == [STACK]
    assert lab.cli("swarm", "list")[0]["name"] == "alpha"
    table = lab.run("swarm", "describe", "alpha").stdout
    assert "n1" in table and "manager" in table
    places = [p for p in (DATA_ROOT / lab.id).rglob("*")
              if p.is_file() and "docker" not in p.relative_to(DATA_ROOT / lab.id).parts
              and not p.name.endswith(".tar")]
    assert places, "nothing to search"
    hits = [str(p) for p in places if b"SWMTKN-" in p.read_bytes()]
    assert hits == []
    assert not [o for o in lab.outputs if "SWMTKN-" in o]


def test_deleting_a_worker_node_removes_it_from_the_swarm(lab: SwarmLab):
    members = {m["name"]: m for m in lab.cli("swarm", "describe", "alpha")["nodes"]}
    gone = members["n3"]["swarm_node_id"]
    assert gone
    lab.cli("node", "delete", "n3")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = lab.docker("n1", "node", "ls", "--format", "{{.ID}}").stdout.split()
        if gone not in listed:
            break
        time.sleep(0.5)
    assert gone not in listed
    desc = lab.cli("swarm", "describe", "alpha")
    assert sorted(m["name"] for m in desc["nodes"]) == ["n1", "n2"]


def test_last_manager_cannot_leave_while_workers_remain(lab: SwarmLab):
    refused = lab.run("swarm", "remove-node", "--swarm", "alpha", "--node", "n1", check=False)
    assert refused.returncode != 0
    assert "last manager" in refused.stderr and "Traceback" not in refused.stderr
    assert lab.swarm_state("n1") == "active"


def test_service_remove_and_swarm_delete_leave_nothing_behind(lab: SwarmLab):
    lab.cli("service", "remove", STACK)
    assert lab.cli("service", "list") == []
    stacks = lab.docker("n1", "stack", "ls", "--format", "{{.Name}}")
    assert STACK not in stacks.stdout.split()
    lab.cli("swarm", "delete", "alpha")
    assert lab.cli("swarm", "list") == []
    for name in ("n1", "n2"):
        assert lab.swarm_state(name) == "inactive"


def test_lab_down_stops_every_engine(lab: SwarmLab):
    nimbus("lab", "down", "--id", lab.id)
    assert wait_clean(lab.id) == []
    assert not Path(f"/run/nimbus-lab/{lab.id}").exists()
    assert leftovers(lab.id) == []
