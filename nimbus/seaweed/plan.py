"""SeaweedFS planning as data: ports per instance, each `weed` argv, security.toml, identities.

One S3 instance is a master, a filer and an S3 gateway on its first node and a volume server
on every listed node. Every listening port is bound to the node's overlay IP (`-ip.bind`);
SeaweedFS adds 127.0.0.1 listeners for master, filer and s3 that no flag removes, so ports
come from a per-instance `slot`: two instances on one host (the lab) never collide, and their
unix sockets and config files live in the instance's own directory.
SECURITY: secrets (S3 keys, JWT keys, the TLS key) only ever go into files rendered here
(written 0600 by the agent), never onto argv.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
REPLICATIONS = {"000": 1, "001": 2}  # placement code -> copies (servers) it needs
MAX_SLOTS = 100  # keeps the four port ranges below apart
# service -> HTTP port of slot 0; the gRPC port is HTTP + 10000 (SeaweedFS's own default).
BASE_PORTS = {"master": 9333, "volume": 8080, "filer": 8888, "s3": 8333}
GRPC_OFFSET = 10000
ROLES = ("master", "volume", "filer", "s3")  # start order on the first node
VOLUME_SIZE_LIMIT_MB = 1024  # small volumes: a Pi's SD card holds several
SIGNING_KEYS = ("signing", "signing_read", "filer_signing", "filer_signing_read")


def port(role: str, slot: int, grpc: bool = False) -> int:
    """The port of `role` in instance slot `slot` (HTTP, or gRPC with grpc=True)."""
    if not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"slot {slot} out of range")
    return BASE_PORTS[role] + slot + (GRPC_OFFSET if grpc else 0)


def free_slot(used: set[int]) -> int:
    """The lowest slot not in `used` (slots taken on any node the instance spans)."""
    for slot in range(MAX_SLOTS):
        if slot not in used:
            return slot
    raise ValueError(f"every one of the {MAX_SLOTS} S3 port slots is taken on these nodes")


def default_replication(node_count: int) -> str:
    return "001" if node_count >= 2 else "000"


def check_replication(replication: str, node_count: int) -> None:
    """ValueError with one readable sentence when the placement cannot be met."""
    if replication not in REPLICATIONS:
        raise ValueError(f"replication must be one of {', '.join(sorted(REPLICATIONS))}")
    needed = REPLICATIONS[replication]
    if node_count < needed:
        raise ValueError(f"replication {replication} keeps {needed} copies and needs at least "
                         f"{needed} nodes; {node_count} given")


def endpoint(gateway_ip: str, slot: int) -> str:
    return f"http://{gateway_ip}:{port('s3', slot)}"


def process_name(instance_id: str, role: str) -> str:
    """The supervisor's name of one process: `s3-<id>.master`."""
    return f"{instance_id}.{role}"


@dataclass(frozen=True)
class Layout:
    """Files of one instance on one node, all under its own directory."""

    root: Path

    @property
    def security(self) -> Path:
        return self.root / "security.toml"

    @property
    def identities(self) -> Path:
        return self.root / "s3.json"

    @property
    def ca(self) -> Path:
        return self.root / "tls" / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.root / "tls" / "node.crt"

    @property
    def key(self) -> Path:
        return self.root / "tls" / "node.key"

    def data(self, role: str) -> Path:
        return self.root / role

    def socket(self, role: str) -> Path:
        return self.root / f"{role}.sock"


@dataclass(frozen=True)
class Instance:
    """What the control plane sends a node about one instance (secrets excluded)."""

    id: str
    slot: int
    replication: str
    gateway_ip: str  # the first node's overlay IP: master, filer, s3
    node_ips: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Process:
    role: str
    name: str
    argv: tuple[str, ...]


def roles_on(instance: Instance, ip: str) -> tuple[str, ...]:
    """Which processes run on the node with overlay IP `ip` (master first)."""
    if ip == instance.gateway_ip:
        return ROLES
    return ("volume",) if ip in instance.node_ips else ()


def _addr(ip: str, role: str, slot: int) -> str:
    """`ip:http.grpc`, the form SeaweedFS takes for a server whose gRPC port is not +10000
    of a default (it is, but saying it keeps every connection explicit)."""
    return f"{ip}:{port(role, slot)}.{port(role, slot, grpc=True)}"


def argv(weed: str, instance: Instance, ip: str, role: str, layout: Layout) -> tuple[str, ...]:
    """The full command line of one process; every listener on `ip`, nothing secret."""
    slot = instance.slot
    head = [weed, "-logtostderr", f"-config_dir={layout.root}", role,
            f"-ip.bind={ip}", f"-port={port(role, slot)}",
            f"-port.grpc={port(role, slot, grpc=True)}"]
    master = _addr(instance.gateway_ip, "master", slot)
    if role == "master":
        # -disableHttp: the master's HTTP API hands a write JWT to any caller of
        # /dir/assign and a read JWT to /dir/lookup; every cluster peer speaks gRPC.
        tail = [f"-ip={ip}", f"-mdir={layout.data('master')}", "-peers=none",
                f"-defaultReplication={instance.replication}", "-telemetry=false",
                "-disableHttp", f"-volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}"]
    elif role == "volume":
        tail = [f"-ip={ip}", f"-dir={layout.data('volume')}", "-max=0", f"-master={master}",
                "-metricsPort=0"]
    elif role == "filer":
        tail = [f"-ip={ip}", f"-master={master}", f"-defaultStoreDir={layout.data('filer')}",
                f"-localSocket={layout.socket('filer')}", "-metricsPort=0"]
    elif role == "s3":
        tail = [f"-ip={ip}", f"-filer={_addr(ip, 'filer', slot)}",
                f"-config={layout.identities}", f"-localSocket={layout.socket('s3')}",
                "-port.https=0", "-port.iceberg=0", "-port.lance=0", "-metricsPort=0"]
    else:
        raise ValueError(f"unknown role {role}")
    return tuple(head + tail)


def processes(weed: str, instance: Instance, ip: str, layout: Layout) -> list[Process]:
    return [Process(role, process_name(instance.id, role), argv(weed, instance, ip, role, layout))
            for role in roles_on(instance, ip)]


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def security_toml(keys: dict[str, str], layout: Layout, common_name: str) -> str:
    """SeaweedFS's security.toml: JWT keys for volume and filer writes and reads, and gRPC
    mutual TLS for every component, accepting only this instance's certificate name."""
    missing = [k for k in SIGNING_KEYS if not keys.get(k)]
    if missing:
        raise ValueError(f"missing signing keys: {', '.join(missing)}")
    sections = {
        "jwt.signing": keys["signing"], "jwt.signing.read": keys["signing_read"],
        "jwt.filer_signing": keys["filer_signing"],
        "jwt.filer_signing.read": keys["filer_signing_read"],
    }
    lines = ["# Written by the nimbus agent; SECURITY: 0600, holds the instance's keys.", ""]
    for section, key in sections.items():
        lines += [f"[{section}]", f"key = {_toml_str(key)}", "expires_after_seconds = 10", ""]
    lines += ["[access]", "ui = false", "",
              "[filer.expose_directory_metadata]", "enabled = false", "",
              "[grpc]", f"ca = {_toml_str(str(layout.ca))}", ""]
    tls = [f"cert = {_toml_str(str(layout.cert))}", f"key = {_toml_str(str(layout.key))}"]
    for component in ("master", "volume", "filer", "s3"):
        lines += [f"[grpc.{component}]", *tls,
                  f"allowed_commonNames = {_toml_str(common_name)}", ""]
    lines += ["[grpc.client]", *tls, ""]
    return "\n".join(lines)


def identities_json(access_key: str, secret_key: str) -> str:
    """The S3 gateway's identities: one admin identity and no anonymous access."""
    return json.dumps({"identities": [{
        "name": "nimbus",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]}, indent=1)


def common_name(instance_id: str) -> str:
    """The CN of every gRPC certificate of one instance (what allowed_commonNames admits)."""
    return f"nimbus-{instance_id}"


def parse_version(text: str) -> str | None:
    """`weed version` output -> "4.48", None when it is not SeaweedFS's answer."""
    m = re.search(r"version\s+(?:\S+\s+)?(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None
