"""End-to-end: an NFS volume served by n1 to the swarm n1+n2, used over WireGuard only.

One `nimbus lab up --nodes 3 --docker` for every check, in file order: the volume is
created and ready; from n2's namespace libnfs (nfs-cp, nfs-cat, and libnfs's own
nfs_pwrite for 8 MiB, see tests/e2e/libnfs.py) writes and reads files that then exist in
n1's folder, while tcpdump on every underlay sees no TCP 2049; n3 is refused, allowed once
it joins the swarm, refused again after it leaves; a killed ganesha is restarted; a stack
deployed with --volume mounts `nimbus-NAME`; bad input changes nothing; delete keeps the
files. This kernel has no NFS client, so no container mounts the volume here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.swarmlab import SwarmLab, docker_missing, swarm_lab
from tests.e2e.test_lab import in_ns
from tests.e2e.test_swarm import Capture

pytestmark = pytest.mark.root

HELPER = Path(__file__).with_name("libnfs.py")
NFS_FILTER = "tcp port 2049"
BIG = 8 * 1024 * 1024
COMPOSE = """\
services:
  db:
    image: nimbus-lab/busybox:latest
    command: ["sh", "-c", "echo up > /data/up; exec sleep 3600"]
    volumes: ["db:/data"]
volumes:
  db: {}
"""


def nfs_missing() -> str | None:
    reason = docker_missing()
    if reason:
        return reason
    for tool in ("ganesha.nfsd", "nfs-ls", "nfs-cp", "nfs-cat", "tcpdump"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt install nfs-ganesha nfs-ganesha-vfs libnfs-utils)"
    return None


@pytest.fixture(scope="module")
def lab() -> Iterator[SwarmLab]:
    reason = nfs_missing()
    if reason:
        pytest.skip(f"needs root, WireGuard, docker.io, ganesha and libnfs-utils: {reason}")
    yield from swarm_lab()


def until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def url(vol: dict[str, Any], file: str = "") -> str:
    tail = f"/{file}" if file else ""
    return f"nfs://{vol['server_ip']}{vol['export_path']}{tail}?version=4"


def nfs(lab: SwarmLab, node: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return in_ns(lab.nodes()[node]["netns"], *argv, timeout=60)


def can_list(lab: SwarmLab, node: str, vol: dict[str, Any]) -> bool:
    return nfs(lab, node, "nfs-ls", url(vol)).returncode == 0


def folder(lab: SwarmLab, vol: dict[str, Any]) -> Path:
    return Path(vol["folder"])


def docker_volume(lab: SwarmLab, node: str, name: str = "nimbus-data") -> dict[str, Any] | None:
    out = lab.docker(node, "volume", "inspect", name)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def test_create_serves_the_folder_of_n1_to_the_swarm_members(lab: SwarmLab):
    lab.cli("swarm", "create", "--name", "web")
    for node in ("n1", "n2"):
        lab.cli("swarm", "add-node", "--swarm", "web", "--node", node)
    started = time.monotonic()
    vol = lab.cli("volume", "create", "--name", "data", "--node", "n1", "--swarm", "web")
    vol = until(lambda: (v := lab.cli("volume", "describe", "data"))["status"] == "ready"
                and v, "the volume to be ready")
    print(f"create -> ready: {time.monotonic() - started:.2f} s", file=sys.stderr)
    nodes = lab.nodes()
    assert vol["node"] == "n1" and vol["swarm"] == "web" and vol["export_path"] == "/data"
    assert vol["server_ip"] == nodes["n1"]["wireguard_ip"]
    assert sorted(vol["clients"]) == sorted(nodes[n]["wireguard_ip"] for n in ("n1", "n2"))
    assert vol["folder"].endswith("/volumes/data") and folder(lab, vol).is_dir()
    for node in ("n1", "n2"):
        dv = until(lambda node=node: docker_volume(lab, node), f"nimbus-data on {node}")
        assert dv["Driver"] == "local" and dv["Options"]["type"] == "nfs"
        assert dv["Options"]["device"] == ":/data"
        assert dv["Options"]["o"].startswith(f"addr={vol['server_ip']},nfsvers=4.1")
    assert docker_volume(lab, "n3") is None
    listening = in_ns(nodes["n1"]["netns"], "ss", "-Htln").stdout
    ports = [ln.split()[3] for ln in listening.splitlines() if ln.split()[3].endswith(":2049")]
    assert ports and all(vol["server_ip"] in p for p in ports), listening  # overlay IP only


def test_a_member_writes_and_reads_over_the_overlay_only(lab: SwarmLab, tmp_path: Path):
    vol = lab.cli("volume", "describe", "data")
    nodes = lab.nodes()
    small, big = tmp_path / "hello.txt", tmp_path / "big.bin"
    small.write_text("hello from n2\n")
    big.write_bytes(os.urandom(BIG))
    underlay = [Capture(n["netns"], "eth0", tmp_path, NFS_FILTER) for n in nodes.values()]
    overlay = Capture(nodes["n1"]["netns"], nodes["n1"]["interface"], tmp_path, NFS_FILTER)
    try:
        copied = nfs(lab, "n2", "nfs-cp", str(small), url(vol, "hello.txt"))
        assert copied.returncode == 0, copied.stderr
        wrote = nfs(lab, "n2", sys.executable, str(HELPER), "write", url(vol, "big.bin"),
                    str(big))
        assert wrote.returncode == 0, wrote.stderr
        size, seconds = wrote.stdout.split()
        assert int(size) == BIG
        print(f"8 MiB write over the overlay: {BIG / float(seconds) / 1e6:.1f} MB/s",
              file=sys.stderr)
        read = subprocess.run(["ip", "netns", "exec", nodes["n2"]["netns"], "nfs-cat",
                               url(vol, "big.bin")], capture_output=True, timeout=60)
        assert read.returncode == 0 and read.stdout == big.read_bytes()
        listed = nfs(lab, "n2", "nfs-ls", url(vol))
        assert "hello.txt" in listed.stdout and "big.bin" in listed.stdout
    finally:
        leaked = {c.where: c.stop() for c in underlay}
        tunnelled = overlay.stop()
    assert {w: lines for w, lines in leaked.items() if lines} == {}
    assert tunnelled, "no NFS traffic seen on n1's WireGuard interface: capture broken?"
    assert (folder(lab, vol) / "hello.txt").read_text() == "hello from n2\n"
    assert (folder(lab, vol) / "big.bin").read_bytes() == big.read_bytes()
    # Root squash: n2's root wrote as nobody.
    assert (folder(lab, vol) / "hello.txt").stat().st_uid == 65534


def test_a_non_member_is_refused_until_it_joins_and_after_it_leaves(lab: SwarmLab):
    vol = lab.cli("volume", "describe", "data")
    refused = nfs(lab, "n3", "nfs-ls", url(vol))
    assert refused.returncode != 0 and "NFS4ERR_NOENT" in refused.stderr
    lab.cli("swarm", "add-node", "--swarm", "web", "--node", "n3")
    until(lambda: can_list(lab, "n3", vol), "n3 to be allowed", timeout=10)
    until(lambda: docker_volume(lab, "n3"), "nimbus-data on n3")
    lab.cli("swarm", "remove-node", "--swarm", "web", "--node", "n3")
    until(lambda: not can_list(lab, "n3", vol), "n3 to be refused again", timeout=10)
    until(lambda: docker_volume(lab, "n3") is None, "nimbus-data gone from n3")
    assert can_list(lab, "n2", vol)


def test_a_killed_ganesha_is_restarted(lab: SwarmLab):
    vol = lab.cli("volume", "describe", "data")
    pid_file = Path(vol["folder"]).parents[1] / "nfs" / "ganesha.pid"
    old = int(pid_file.read_text())
    os.kill(old, signal.SIGKILL)
    until(lambda: pid_file.exists() and pid_file.read_text().strip().isdigit()
          and int(pid_file.read_text()) != old and can_list(lab, "n2", vol),
          "ganesha to serve again", timeout=30)


def test_a_stack_with_volume_mounts_the_nfs_volume(lab: SwarmLab, tmp_path: Path):
    compose = tmp_path / "compose.yml"
    compose.write_text(COMPOSE)
    bad = lab.run("service", "deploy", "--swarm", "web", "--file", str(compose), "--name",
                  "shop", "--volume", "nope=data", check=False)
    assert bad.returncode != 0 and "declares no volume 'nope'" in bad.stderr
    lab.cli("service", "deploy", "--swarm", "web", "--file", str(compose), "--name", "shop",
            "--volume", "db=data")
    mounts = lab.docker("n1", "service", "inspect", "shop_db", "--format",
                        "{{json .Spec.TaskTemplate.ContainerSpec.Mounts}}")
    assert mounts.returncode == 0, mounts.stderr
    [mount] = json.loads(mounts.stdout)
    assert mount["Source"] == "nimbus-data" and mount["Target"] == "/data"
    for force in ([], ["--force"]):
        refused = lab.run("volume", "delete", "data", *force, check=False)
        assert refused.returncode != 0 and "shop" in refused.stderr
    lab.cli("service", "remove", "shop")


@pytest.mark.parametrize("args, words", [
    (["--name", "Bad_Name", "--node", "n1"], "volume name"),
    (["--name", "x", "--node", "n1", "--folder", "relative/dir"], "absolute"),
    (["--name", "x", "--node", "n1", "--folder", "/srv/../etc"], "plain absolute"),
    (["--name", "x", "--node", "n1", "--folder", "/etc"], "system directory"),
    (["--name", "x", "--node", "nope"], "no node 'nope'"),
    (["--name", "x", "--node", "n1", "--swarm", "nope"], "no swarm 'nope'"),
    (["--name", "data", "--node", "n2"], "already exists"),
])
def test_bad_input_is_one_line_and_changes_nothing(lab: SwarmLab, args, words):
    if "--swarm" not in args:
        args = [*args, "--swarm", "web"]
    before = lab.cli("volume", "list")
    out = lab.run("volume", "create", *args, check=False)
    assert out.returncode != 0 and words in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert lab.cli("volume", "list") == before


def test_the_agents_own_files_are_never_exported(lab: SwarmLab):
    n1_data = Path(lab.cli("volume", "describe", "data")["folder"]).parents[1]
    data_dir = n1_data.parents[1] / "n2" / n1_data.name  # n2 serves nothing yet
    for bad in (data_dir, data_dir.parent, data_dir / "nfs", data_dir / "volumes"):
        out = lab.run("volume", "create", "--name", "own", "--node", "n2", "--swarm", "web",
                      "--folder", str(bad), check=False)
        assert out.returncode != 0 and "data dir" in out.stderr, out.stderr
    assert [v["name"] for v in lab.cli("volume", "list")] == ["data"]


def test_delete_removes_export_and_docker_volumes_and_keeps_the_files(lab: SwarmLab):
    vol = lab.cli("volume", "describe", "data")
    out = lab.cli("volume", "delete", "data")
    assert out["deleted"] and vol["folder"] in out["kept"]
    until(lambda: not can_list(lab, "n2", vol), "the export to go")
    for node in ("n1", "n2"):
        until(lambda node=node: docker_volume(lab, node) is None, f"nimbus-data gone on {node}")
    n1 = lab.nodes()["n1"]["netns"]
    until(lambda: ":2049" not in in_ns(n1, "ss", "-Htln").stdout, "ganesha to stop")
    assert (folder(lab, vol) / "big.bin").stat().st_size == BIG  # the data stays
    assert lab.cli("volume", "list") == []
