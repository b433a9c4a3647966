"""Simulated agents that join through the real flow: join token, real CSR, signed certificate."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AGENT_VERSION = "0.1.0-bench"


@dataclass
class SimAgent:
    node_id: str
    ip_address: str
    cert_file: str
    key_file: str

    def heartbeat_body(self, usage: float) -> bytes:
        return json.dumps({
            "cpu": {"count": 2, "usage": usage},
            "memory": {"total": 4 << 30, "used": 1 << 30},
            "disk": {"total": 64 << 30, "used": 20 << 30},
            "ip_address": self.ip_address, "agent_version": AGENT_VERSION,
            "hostname": f"sim-{self.node_id[5:13]}", "arch": "x86_64",
        }, separators=(",", ":")).encode()


def join_agents(url: str, ca_pem: str, admin: Any, count: int, out_dir: Path) -> list[SimAgent]:
    """Create `count` nodes as the admin and join each one with its token, as an agent would."""
    from nimbus import wire
    from nimbus.client import ApiClient
    from nimbus.security.pki import make_csr
    from nimbus.security.wgkeys import generate_keypair

    out_dir.mkdir(parents=True, exist_ok=True)
    anon = ApiClient(url, ca_pem)
    agents = []
    for i in range(count):
        ip = f"192.0.2.{i % 250 + 1}" if i < 250 else f"198.51.100.{i % 250 + 1}"
        made = admin.request("POST", "/v1/nodes", {"ip_address": ip, "name": f"sim-{i:04d}"})
        token = wire.decode_join_token(made["join_token"])
        csr, key = make_csr(token["node_id"])
        sim = SimAgent(token["node_id"], ip, str(out_dir / f"{i}.crt"), str(out_dir / f"{i}.key"))
        joined = anon.request("POST", "/v1/nodes/join", {
            "node_id": token["node_id"], "secret": token["secret"], "csr": csr,
            "hostname": f"sim-{sim.node_id[5:13]}", "arch": "x86_64",
            "agent_version": AGENT_VERSION, "ip_address": ip,
            "wireguard_public_key": generate_keypair()[1]})
        Path(sim.cert_file).write_text(joined["cert_pem"])
        key_path = Path(sim.key_file)
        key_path.touch(mode=0o600)
        key_path.write_text(key)
        agents.append(sim)
    anon.close()
    return agents

