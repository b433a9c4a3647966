"""End-to-end: real WireGuard (wireguard-go or kernel) between lab namespaces built by LabNet."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nimbus.lab import netns as labnet
from nimbus.lab.netns import LabNet, list_labs, new_lab_id, subnet_octet
from nimbus.security.wgkeys import generate_keypair
from nimbus.sysrun import CommandError, Runner
from nimbus.wireguard.apply import WireGuardInterface
from nimbus.wireguard.config import Peer

pytestmark = pytest.mark.root

PORT = 51820


def missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "not running as root"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    for tool in ("ip", "wg", "wireguard-go", "ping"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    return None


class CountingRunner(Runner):
    """A real Runner that remembers every argv it ran."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(self, argv, **kw):  # type: ignore[override]
        self.calls.append(list(argv))
        return super().run(argv, **kw)

    def wg_sets(self) -> list[list[str]]:
        return [c for c in self.calls if c[:2] == ["wg", "set"] and "peer" in c]


class FailingWgSetRunner(CountingRunner):
    """Runs the peer `wg set` for real, then reports failure: a half-applied change."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = True

    def run(self, argv, **kw):  # type: ignore[override]
        result = super().run(argv, **kw)
        if self.armed and argv[:2] == ["wg", "set"] and "peer" in argv:
            self.armed = False
            raise CommandError(list(argv), 1, "injected failure")
        return result


def lab_leftovers(lab_id: str) -> list[str]:
    """Everything of the lab still present on the machine."""
    left = []
    ns_out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += [
        f"netns {line.split()[0]}" for line in ns_out.splitlines() if f"nlab-{lab_id}-" in line
    ]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    left += [f"host link {line}" for line in links.splitlines() if f"nl{lab_id}" in line]
    left += [f"socket {p}" for p in Path("/var/run/wireguard").glob(f"nl{lab_id}*.sock")]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(
            a.startswith(f"nl{lab_id}".encode()) or f"nlab-{lab_id}-".encode() in a for a in argv
        ):
            left.append(f"process {cmdline.parent.name}: {argv}")
    if (labnet.STATE_ROOT / lab_id).exists():
        left.append(f"state dir {labnet.STATE_ROOT / lab_id}")
    return left


def wait_clean(lab_id: str, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := lab_leftovers(lab_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def lab() -> Iterator[LabNet]:
    reason = missing_requirements()
    if reason:
        pytest.skip(f"needs root + /dev/net/tun + wireguard-go: {reason}")
    runner = CountingRunner()
    existing = set(list_labs(runner))
    lab_id = next(i for i in iter(new_lab_id, None) if i not in existing)
    net = LabNet(lab_id, runner)
    try:
        yield net
    finally:
        net.destroy()
        assert wait_clean(lab_id) == []


def overlay_ip(net: LabNet, member: str) -> str:
    host = 1 if member == "cp" else 1 + int(member)
    return f"10.250.{subnet_octet(net.lab_id)}.{host}"


def can_ping(net: LabNet, src: str, dst: str) -> bool:
    argv = ["ping", "-c", "3", "-i", "0.2", "-W", "2", overlay_ip(net, dst)]
    return net.run_in(src, argv, check=False, timeout=15).returncode == 0


def mesh_peers(net: LabNet, pubs: dict[str, str], member: str) -> list[Peer]:
    return [
        Peer(pubs[m], f"{net.underlay_ip(m)}:{PORT}", (f"{overlay_ip(net, m)}/32",))
        for m in net.members()
        if m != member
    ]


def test_wireguard_mesh_between_lab_namespaces(lab: LabNet):
    runner = lab.runner
    assert isinstance(runner, CountingRunner)
    lab.create(nodes=2)
    members = lab.members()
    assert members == ["cp", "1", "2"]
    ifaces: dict[str, WireGuardInterface] = {}
    pubs: dict[str, str] = {}
    for m in members:
        priv, pubs[m] = generate_keypair()
        ifaces[m] = WireGuardInterface(lab.wg_ifname(m), runner, netns=lab.netns(m))
        assert ifaces[m].up(priv, f"{overlay_ip(lab, m)}/24", PORT) in ("kernel", "wireguard-go")
        assert ifaces[m].exists()
        calls = len(runner.calls)
        ifaces[m].up(priv, f"{overlay_ip(lab, m)}/24", PORT)  # idempotent: reads only
        assert not any(c[:2] == ["wg", "set"] or "replace" in c for c in runner.calls[calls:])

    for m in members:
        assert ifaces[m].apply_peers(mesh_peers(lab, pubs, m)) == {
            "added": 2, "updated": 0, "removed": 0,
        }  # fmt: skip
    for src, dst in itertools.permutations(members, 2):
        assert can_ping(lab, src, dst), f"{src} -> {dst} over the overlay"

    # Applying the same lists again changes nothing and runs no peer `wg set`.
    before = len(runner.wg_sets())
    for m in members:
        assert ifaces[m].apply_peers(mesh_peers(lab, pubs, m)) == {
            "added": 0, "updated": 0, "removed": 0,
        }  # fmt: skip
    assert len(runner.wg_sets()) == before

    # Node 1 drops node 2: that pair is cut, every other pair still talks.
    without_2 = [p for p in mesh_peers(lab, pubs, "1") if p.public_key != pubs["2"]]
    assert ifaces["1"].apply_peers(without_2)["removed"] == 1
    assert set(ifaces["1"].peers()) == {pubs["cp"]}
    assert not can_ping(lab, "1", "2")
    assert not can_ping(lab, "2", "1")
    for src, dst in [("cp", "1"), ("1", "cp"), ("cp", "2"), ("2", "cp")]:
        assert can_ping(lab, src, dst), f"{src} -> {dst} after removing 1<->2"

    # A failing apply restores the previous peers instead of leaving them half-applied.
    flaky = FailingWgSetRunner()
    iface = WireGuardInterface(lab.wg_ifname("1"), flaky, netns=lab.netns("1"))
    with pytest.raises(CommandError, match="injected failure"):
        iface.apply_peers(mesh_peers(lab, pubs, "1"))
    assert set(iface.peers()) == {pubs["cp"]}

    # A recorded process is stopped by destroy().
    sleeper = lab.popen_in("cp", ["sleep", "300"])
    try:
        lab.destroy()
        assert sleeper.wait(timeout=10) is not None
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    assert wait_clean(lab.lab_id) == []
    assert lab.lab_id not in list_labs(runner)


def test_failed_up_deletes_the_half_made_interface(lab: LabNet):
    lab.create(nodes=0)
    iface = WireGuardInterface(lab.wg_ifname("cp"), lab.runner, netns=lab.netns("cp"))
    priv, _ = generate_keypair()
    with pytest.raises(CommandError):
        iface.up(priv, "10.250.0.1/99", PORT)  # `ip address replace` rejects it
    assert not iface.exists()
    iface.down()  # tolerant when already gone


def test_destroy_cleans_up_after_a_crash(lab: LabNet):
    """A lab whose state file is gone is still found by its namespace prefix and removed."""
    lab.create(nodes=1)
    priv, _ = generate_keypair()
    iface = WireGuardInterface(lab.wg_ifname("1"), lab.runner, netns=lab.netns("1"))
    iface.up(priv, "10.250.0.2/24", None)
    (labnet.STATE_ROOT / lab.lab_id / "state.json").unlink()
    assert lab.lab_id in list_labs(lab.runner)
    labnet.destroy(lab.lab_id, Runner())
    assert wait_clean(lab.lab_id) == []
