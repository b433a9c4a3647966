"""Shared bench plumbing: results, percentiles, process probes, a seeded control plane."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import Cli, Server, bootstrap_admin  # noqa: E402

PYZ = REPO / "dist" / "nimbus.pyz"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# A /16 overlay so that 10,000 nodes fit (the default /24 holds 253).
BIG_SUBNET = "10.106.0.0/16"


@dataclass
class Result:
    """One benchmark figure against its budget; op is '>=' or '<='."""

    name: str
    figure: float | None
    unit: str
    budget: float | None
    op: str = "<="
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.figure is None or self.budget is None:
            return None
        return self.figure >= self.budget if self.op == ">=" else self.figure <= self.budget

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        return cls(**{k: v for k, v in data.items() if k != "passed"})


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return percentile(values, 50)


# -- process probes ------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmHWM") / 1024


def _status_kb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (not its children)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


# -- a control plane to measure ------------------------------------------------------------

@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"nimbus-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_server(tmp: Path, settings: dict[str, Any] | None = None) -> Server:
    return Server(tmp, {"wireguard_subnet": BIG_SUBNET, **(settings or {})}).start(timeout=60)


def start_seeded_server(tmp: Path, nodes: int, settings: dict[str, Any] | None = None) -> Server:
    """A control plane with `nodes` joined nodes: started once to create its CA and keys (it
    refuses a store that has collections but no CA: nimbus/server/verify.py), stopped,
    seeded, started again."""
    first = start_server(tmp, settings)
    first.stop()
    seed_nodes(first.data_dir, nodes)
    return start_server(tmp, settings)


def admin_client(server: Server, conn: dict[str, Any]) -> Any:
    from nimbus.client import ApiClient, HmacAuth

    return ApiClient(server.url, conn["tls_ca"],
                     auth=HmacAuth(conn["access_key"], conn["secret_key"]))


def admin_for(server: Server, tmp: Path) -> tuple[Cli, dict[str, Any]]:
    cli = Cli(tmp / "home")
    return cli, bootstrap_admin(server, cli)


def _fake_wg_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def seed_nodes(data_dir: Path, count: int, now: float | None = None,
               with_runtime: bool = True) -> int:
    """Write `count` joined nodes straight into the store of a stopped control plane.

    They get overlay addresses after the highest one in use and certificate serials that
    were never issued (only the simulated agents the benchmarks drive hold real ones).
    """
    from nimbus.store import Store

    now = time.time() if now is None else now
    store = Store(data_dir / "store")
    with store.transaction("nodes", "runtime") as tx:
        nodes, runtime = tx["nodes"], tx["runtime"]
        used = {n["wireguard_ip"] for n in nodes.values()}
        index = 2
        for i in range(count):
            while True:
                hi, lo = divmod(index, 256)
                index += 1
                ip = f"10.106.{hi}.{lo}"
                if lo not in (0, 255) and ip != "10.106.0.1" and ip not in used:
                    break
            node_id = "node-" + secrets.token_hex(8)
            nodes[node_id] = {
                "id": node_id, "name": f"seed-{i:05d}",
                "ip_address": f"198.18.{i // 250}.{i % 250 + 1}",
                "reported_ip": None, "wireguard_ip": ip, "wireguard_public_key": _fake_wg_key(),
                "wireguard_port": 51820, "state": "active", "created_at": round(now - 3600, 3),
                "joined_at": round(now - 3500, 3), "hostname": f"seed{i}", "arch": "x86_64",
                "agent_version": "0.1.0", "cert_serials": [secrets.token_hex(16)],
                "cert_expires_at": round(now + 30 * 86400, 3),
                "join": {"used": True, "used_at": round(now - 3500, 3), "secret_sha256": None,
                         "expires_at": round(now - 3000, 3)}}
            if with_runtime:
                runtime[node_id] = {"last_seen": round(now, 3),
                                    "cpu": {"count": 4, "usage": 0.12},
                                    "memory": {"total": 8 << 30, "used": 3 << 30},
                                    "disk": {"total": 256 << 30, "used": 90 << 30}}
    return count


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    """Poll `check` every `every` seconds until it holds (True) or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True
