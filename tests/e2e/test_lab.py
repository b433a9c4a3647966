"""End-to-end: `nimbus lab` builds a real WireGuard full mesh (control plane + 3 agents).

One lab per module (module-scoped fixture); the tests run in file order and the
destructive ones (delete, lab down) come last. Every command is the real CLI, run
from the built zipapp when there is a current one (see `nimbus_cmd`).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
PYZ = REPO / "dist" / "nimbus.pyz"
DATA_ROOT = Path("/var/lib/nimbus-lab")
STATE_ROOT = Path("/run/nimbus-lab")
WG_PORT = 51820
NODES = 3

# mTLS call to the API with a node's own credentials; prints the HTTP status or "tls-refused".
CERT_PROBE = """
import http.client, ssl, sys
ca, crt, key, host = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(crt, key)
try:
    c = http.client.HTTPSConnection(host, 8443, context=ctx, timeout=10)
    c.request("POST", "/v1/internal/heartbeat", body=b"{}",
              headers={"Content-Type": "application/json"})
    print(c.getresponse().status)
except (ssl.SSLError, ConnectionError) as exc:
    print("tls-refused", exc)
"""


def missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "not running as root"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    for tool in ("ip", "wg", "wireguard-go", "ping", "tcpdump"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    return None


def _pyz_is_current() -> bool:
    newest = max(p.stat().st_mtime for p in (REPO / "nimbus").rglob("*.py"))
    return PYZ.stat().st_mtime >= newest


def nimbus_cmd() -> list[str]:
    """The zipapp when NIMBUS_TEST_PYZ=1 or when dist/nimbus.pyz is there and not older than
    the sources (a stale local build would test old code), else `python -m nimbus`."""
    flag = os.environ.get("NIMBUS_TEST_PYZ")
    if flag == "1" or (flag != "0" and PYZ.exists() and _pyz_is_current()):
        return [sys.executable, str(PYZ)]
    return [sys.executable, "-m", "nimbus"]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
    out["PYTHONPATH"] = str(REPO)
    return out


def nimbus(*args: str, check: bool = True, timeout: float = 120,
           ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*nimbus_cmd(), *args], capture_output=True, text=True, env=env(),
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"nimbus {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def in_ns(ns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


class LabHandle:
    """The lab under test, driven through `nimbus lab …`."""

    def __init__(self, lab_id: str, up_output: str, up_stderr: str = "") -> None:
        self.id = lab_id
        self.up_output = up_output
        self.up_stderr = up_stderr

    def status(self) -> dict[str, Any]:
        return json.loads(nimbus("lab", "status", "--id", self.id, "-o", "json").stdout)

    def cli(self, *args: str) -> Any:
        out = nimbus("lab", "cli", "--id", self.id, "--", *args, "-o", "json").stdout
        return json.loads(out)

    def members(self) -> dict[str, dict[str, Any]]:
        """'cp' and node names -> {netns, interface, wireguard_ip, ...} (deleted ones too)."""
        st = self.status()
        return {"cp": st["control_plane"], **{n["name"]: n for n in st["nodes"]}}

    def peers(self, member: dict[str, Any]) -> set[str]:
        out = in_ns(member["netns"], "wg", "show", member["interface"], "peers")
        assert out.returncode == 0, out.stderr
        return set(out.stdout.split())

    def endpoints(self, member: dict[str, Any]) -> dict[str, str]:
        out = in_ns(member["netns"], "wg", "show", member["interface"], "endpoints")
        assert out.returncode == 0, out.stderr
        return dict(line.split("\t") for line in out.stdout.splitlines() if "\t" in line)

    def log(self, name: str) -> str:
        path = DATA_ROOT / self.id / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def pings(src: dict[str, Any], dst_ip: str) -> bool:
    return in_ns(src["netns"], "ping", "-n", "-q", "-c", "1", "-W", "1", dst_ip).returncode == 0


def ping_all(members: dict[str, dict[str, Any]], settle: float = 20) -> list[str]:
    """Pairs that still fail after retrying for up to `settle` seconds (mesh converging)."""
    pending = list(itertools.permutations(members, 2))
    deadline = time.monotonic() + settle
    while True:
        pending = [(s, d) for s, d in pending
                   if not pings(members[s], members[d]["wireguard_ip"])]
        if not pending or time.monotonic() > deadline:
            return [f"{s} -> {d}" for s, d in pending]
        time.sleep(0.5)


def leftovers(lab_id: str) -> list[str]:
    """Everything of the lab still on the machine: namespaces, links, sockets, processes, files."""
    left = []
    ns_out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += [f"netns {ln.split()[0]}" for ln in ns_out.splitlines() if f"nlab-{lab_id}-" in ln]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    left += [f"host link {ln}" for ln in links.splitlines() if f"nl{lab_id}" in ln]
    left += [f"socket {p}" for p in Path("/var/run/wireguard").glob(f"nl{lab_id}*.sock")]
    marks = (f"nl{lab_id}".encode(), f"nlab-{lab_id}-".encode(), f"nimbus-lab/{lab_id}/".encode())
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(m in a for a in argv for m in marks):
            left.append(f"process {cmdline.parent.name}: {argv}")
    left += [f"dir {d}" for d in (DATA_ROOT / lab_id, STATE_ROOT / lab_id) if d.exists()]
    return left


def wait_clean(lab_id: str, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := leftovers(lab_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def new_id() -> str:
    existing = {p.name for root in (DATA_ROOT, STATE_ROOT) if root.is_dir()
                for p in root.iterdir()}
    return next(i for i in iter(lambda: "t" + secrets.token_hex(2), None) if i not in existing)


def start_lab(nodes: int) -> LabHandle:
    lab_id = new_id()
    proc = nimbus("lab", "up", "--nodes", str(nodes), "--id", lab_id, check=False, timeout=400)
    if proc.returncode != 0:
        nimbus("lab", "down", "--id", lab_id, check=False)
        raise AssertionError(f"lab up failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return LabHandle(lab_id, proc.stdout, proc.stderr)


def stop_lab(lab_id: str) -> None:
    proc = nimbus("lab", "down", "--id", lab_id, check=False)
    if wait_clean(lab_id):  # a failed `down` must not leave the machine dirty for others
        from nimbus.lab import netns

        netns.destroy(lab_id)
        shutil.rmtree(DATA_ROOT / lab_id, ignore_errors=True)
    assert proc.returncode == 0 or not leftovers(lab_id), proc.stderr


@pytest.fixture(scope="module")
def lab() -> Iterator[LabHandle]:
    reason = missing_requirements()
    if reason:
        pytest.skip(f"needs root, /dev/net/tun, wireguard-go, wg, ip, ping, tcpdump: {reason}")
    handle = start_lab(NODES)
    try:
        yield handle
    finally:
        stop_lab(handle.id)


def test_lab_up_prints_the_nodes_and_a_full_ping_matrix(lab: LabHandle):
    total = (NODES + 1) * NODES
    assert f"{total}/{total} ok" in lab.up_output, lab.up_output
    assert "FAIL" not in lab.up_output
    st = lab.status()
    assert st["control_plane"]["netns"] == f"nlab-{lab.id}-cp"
    assert st["control_plane"]["interface"] == f"nl{lab.id}cp"
    assert st["control_plane"]["wireguard_ip"] == "10.106.103.1"
    assert [n["name"] for n in st["nodes"]] == [f"n{i}" for i in range(1, NODES + 1)]
    for i, n in enumerate(st["nodes"], start=1):
        assert {"id", "name", "netns", "interface", "wireguard_ip", "status"} <= set(n)
        assert (n["netns"], n["interface"]) == (f"nlab-{lab.id}-{i}", f"nl{lab.id}n{i}")
        assert n["status"] == "ready"
    listed = lab.cli("node", "list")
    assert {n["id"] for n in listed} == {n["id"] for n in st["nodes"]}


def test_every_member_pings_every_other_over_the_overlay(lab: LabHandle):
    members = lab.members()
    assert ping_all(members) == []
    # Full mesh: each member has every other member as a WireGuard peer.
    keys = {n["wireguard_public_key"] for n in lab.cli("node", "list")}
    for name, m in members.items():
        assert len(lab.peers(m)) == NODES, name  # cp: all nodes; node: cp + the others
        if name == "cp":
            assert lab.peers(m) == keys


def test_underlay_carries_only_encrypted_wireguard_udp(lab: LabHandle):
    members = lab.members()
    n1, n2, cp = members["n1"], members["n2"], members["cp"]
    marker = "deadbeefcafe0123"
    dump = subprocess.Popen(
        ["ip", "netns", "exec", f"nlab-{lab.id}-br", "tcpdump", "-n", "-l", "-x", "-i", "v1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        assert dump.stderr is not None
        while "listening on" not in dump.stderr.readline() and time.monotonic() < deadline:
            pass
        for src, dst in ((n1, n2), (n2, n1), (cp, n1), (n1, cp)):
            assert in_ns(src["netns"], "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-p",
                         marker, dst["wireguard_ip"]).returncode == 0
        time.sleep(0.5)
    finally:
        dump.send_signal(signal.SIGINT)
        try:
            out, _ = dump.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            dump.kill()
            out, _ = dump.communicate()
    headers = [ln for ln in out.splitlines() if ln and not ln[0].isspace()]
    hexdump = "".join(ln.split(":", 1)[1] for ln in out.splitlines()
                      if ln.strip().startswith("0x")).replace(" ", "")
    assert any("UDP" in ln and f".{WG_PORT}" in ln for ln in headers), out[-2000:]
    # (IPv6 router solicitations of the veths themselves are ICMP6 on the link, not ours.)
    assert not [ln for ln in headers if " IP " in ln and "ICMP" in ln], out[-2000:]
    assert not [ln for ln in headers if "10.106.103." in ln], out[-2000:]
    assert marker not in hexdump  # the ping payload never crosses the underlay in clear


def test_join_request_reached_the_api_through_the_tunnel(lab: LabHandle):
    nodes = {n["id"]: n for n in lab.status()["nodes"]}
    joins = [e for e in lab.cli("audit") if e.get("event") == "join.ok"]
    assert {e["node_id"] for e in joins} == set(nodes)
    for e in joins:
        assert e["source"] == nodes[e["node_id"]]["wireguard_ip"], e
        assert e["source"].startswith("10.106.103.")


def test_update_ip_moves_the_endpoint_on_every_peer(lab: LabHandle):
    members = lab.members()
    n3 = members["n3"]
    old_ip = n3["underlay_ip"]
    new_ip = re.sub(r"\.\d+$", ".103", old_ip)
    key = next(n["wireguard_public_key"] for n in lab.cli("node", "list") if n["name"] == "n3")
    ns = n3["netns"]
    # Make the move real: the new address takes over eth0 (the old one goes away).
    assert in_ns(ns, "sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1").returncode == 0
    assert in_ns(ns, "ip", "address", "add", f"{new_ip}/24", "dev", "eth0").returncode == 0
    node = lab.cli("node", "update-ip", n3["id"], "--ip", new_ip)
    assert node["ip_address"] == new_ip
    assert in_ns(ns, "ip", "address", "del", f"{old_ip}/24", "dev", "eth0").returncode == 0
    others = {k: v for k, v in members.items() if k != "n3"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = {k: lab.endpoints(m).get(key) for k, m in others.items()}
        if all(ep == f"{new_ip}:{WG_PORT}" for ep in seen.values()):
            break
        time.sleep(0.2)
    assert all(ep == f"{new_ip}:{WG_PORT}" for ep in seen.values()), seen
    assert ping_all(lab.members()) == []
    assert {n["name"]: n["ip_address"] for n in lab.cli("node", "list")}["n3"] == new_ip


def wait_all_ready(lab: LabHandle, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = lab.cli("node", "list")
        if all(n["status"] == "ready" for n in nodes) or time.monotonic() > deadline:
            return nodes


def test_agent_restart_keeps_the_mesh_working(lab: LabHandle):
    nimbus("lab", "restart", "--id", lab.id, "1")
    assert ping_all(lab.members()) == []
    assert all(n["status"] == "ready" for n in wait_all_ready(lab)), lab.log("n1")


def test_control_plane_restart_keeps_the_mesh_working(lab: LabHandle):
    nimbus("lab", "restart", "--id", lab.id, "cp")
    assert ping_all(lab.members()) == []
    assert all(n["status"] == "ready" for n in wait_all_ready(lab)), lab.log("cp")
    # The restarted control plane still reconciles: its peers are every node's key.
    keys = {n["wireguard_public_key"] for n in lab.cli("node", "list")}
    assert lab.peers(lab.members()["cp"]) == keys


def test_lab_cli_exits_with_the_inner_commands_code(lab: LabHandle):
    unknown = "node-00000000deadbeef"
    inner = nimbus("lab", "cli", "--id", lab.id, "--", "node", "describe", unknown, check=False)
    assert inner.returncode == 4, (inner.stdout, inner.stderr)
    assert inner.stderr.count("\n") == 1, inner.stderr
    # `--debug` after `--` belongs to the inner command, not to `lab cli`: a failure of
    # `lab cli` itself is still one line, no traceback.
    outer = nimbus("lab", "cli", "--id", "zz9none", "--", "--debug", "node", "list", check=False)
    assert outer.returncode == 4 and "Traceback" not in outer.stderr, outer.stderr
    assert outer.stderr.count("\n") == 1, outer.stderr


def test_lab_cli_passes_the_callers_token_on(lab: LabHandle):
    proc = subprocess.run([*nimbus_cmd(), "lab", "cli", "--id", lab.id, "--", "node", "list"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**env(), "NIMBUS_TOKEN": "not-a-valid-token"})
    # The lab admin's HMAC key would succeed; the bad token must be what was used.
    assert proc.returncode == 3, (proc.stdout, proc.stderr)


def test_lab_ping_exits_non_zero_on_a_fail_cell(lab: LabHandle):
    members = lab.members()
    n1, cp_ip = members["n1"], members["cp"]["wireguard_ip"]
    route = ["ip", "route", "add", "blackhole", f"{cp_ip}/32"]
    assert in_ns(n1["netns"], *route).returncode == 0
    try:
        failed = nimbus("lab", "ping", "--id", lab.id, check=False)
        assert failed.returncode == 1 and "FAIL" in failed.stdout, failed.stdout
    finally:
        in_ns(n1["netns"], "ip", "route", "del", "blackhole", f"{cp_ip}/32")
    assert ping_all(members, settle=10) == []
    assert nimbus("lab", "ping", "--id", lab.id).returncode == 0


def test_a_second_lab_runs_beside_the_first(lab: LabHandle):
    other = start_lab(1)
    try:
        assert other.id != lab.id
        assert "2/2 ok" in other.up_output, other.up_output
        assert f"this makes another lab, {other.id}" in other.up_stderr, other.up_stderr
        # Without --id, lab commands use the newest lab and say which.
        newest = nimbus("lab", "cli", "--", "node", "list", "-o", "json")
        chosen = re.search(r"using lab (\w+)", newest.stderr).group(1)
        if chosen == other.id:
            assert [n["name"] for n in json.loads(newest.stdout)] == ["n1"]
        else:  # another helper's lab, made after ours on this shared machine
            def created(i: str) -> float:
                return json.loads((DATA_ROOT / i / "lab.json").read_text())["created_at"]
            assert created(chosen) >= created(other.id)
        assert ping_all(other.members()) == []
        assert ping_all(lab.members(), settle=5) == []
    finally:
        stop_lab(other.id)
    assert wait_clean(other.id) == []
    assert ping_all(lab.members(), settle=5) == []


def cert_probe(lab: LabHandle, member: dict[str, Any]) -> str:
    d = DATA_ROOT / lab.id / f"n{member['member']}" / "data"
    cp_ip = lab.status()["control_plane"]["underlay_ip"]
    out = in_ns(member["netns"], sys.executable, "-c", CERT_PROBE, str(d / "ca.crt"),
                str(d / "client.crt"), str(d / "client.key"), cp_ip)
    return out.stdout.strip() or out.stderr.strip()


def test_delete_cuts_the_node_out_of_the_mesh_within_2s(lab: LabHandle):
    members = lab.members()
    victim = members["n2"]
    key = next(n["wireguard_public_key"] for n in lab.cli("node", "list") if n["name"] == "n2")
    assert cert_probe(lab, victim) == "200"  # the probe works while the node is a member
    remaining = {k: v for k, v in members.items() if k != "n2"}
    assert all(key in lab.peers(m) for m in remaining.values())

    lab.cli("node", "delete", victim["id"])
    deadline = time.monotonic() + 2
    while True:
        holders = [k for k, m in remaining.items() if key in lab.peers(m)]
        if not holders or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert holders == [], f"still peered with the deleted node after 2 s: {holders}"

    for name, m in remaining.items():
        assert not pings(victim, m["wireguard_ip"]), f"deleted node still reaches {name}"
        assert not pings(m, victim["wireguard_ip"]), f"{name} still reaches the deleted node"
    assert ping_all(remaining) == []
    probe = cert_probe(lab, victim)
    assert probe in ("401", "403") or probe.startswith("tls-refused"), probe
    # A deleted node is no longer a member: status lists and `lab ping` pings only the others.
    assert {n["name"] for n in lab.status()["nodes"]} == {"n1", "n3"}
    matrix = nimbus("lab", "ping", "--id", lab.id)
    assert "6/6 ok" in matrix.stdout and "n2" not in matrix.stdout, matrix.stdout
    # Its tunnel is gone, yet the deleted node's agent learns why (asking the public
    # address) and says so once instead of logging timeouts forever.
    n2_log = DATA_ROOT / lab.id / "logs" / "n2.log"
    deadline = time.monotonic() + 90
    while "this node was removed" not in n2_log.read_text() and time.monotonic() < deadline:
        time.sleep(1)
    assert n2_log.read_text().count("this node was removed") == 1, lab.log("n2")
    time.sleep(5)
    assert n2_log.read_text().count("this node was removed") == 1, lab.log("n2")


def test_lab_down_leaves_nothing_behind(lab: LabHandle):
    assert leftovers(lab.id) != []
    nimbus("lab", "down", "--id", lab.id)
    assert wait_clean(lab.id) == []
    gone = nimbus("lab", "status", "--id", lab.id, check=False)
    assert gone.returncode != 0 and "no lab" in gone.stderr
