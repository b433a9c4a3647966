"""Pure WireGuard peer data: wire format, `wg show dump` parsing and diff planning (no I/O)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nimbus.security.wgkeys import is_valid_key
from nimbus.wire import endpoint_problem

DEFAULT_KEEPALIVE = 25
_NONE = "(none)"


@dataclass(frozen=True)
class Peer:
    """One WireGuard peer as the mesh wants it."""

    public_key: str
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    persistent_keepalive: int = DEFAULT_KEEPALIVE

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Peer:
        """Build from the wire dict; `node_id` and `name` are accepted and ignored."""
        try:
            key = d["public_key"]
            ips = d.get("allowed_ips") or []
        except (KeyError, TypeError) as exc:
            raise ValueError(f"peer: missing field {exc}") from None
        if isinstance(ips, str):
            ips = [ips]
        keepalive = d.get("persistent_keepalive", DEFAULT_KEEPALIVE)
        return cls(
            public_key=str(key),
            endpoint=d.get("endpoint") or None,
            allowed_ips=tuple(str(ip) for ip in ips),
            persistent_keepalive=int(keepalive) if keepalive is not None else 0,
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire dict (allowed_ips as a list)."""
        return {
            "public_key": self.public_key,
            "endpoint": self.endpoint,
            "allowed_ips": list(self.allowed_ips),
            "persistent_keepalive": self.persistent_keepalive,
        }


@dataclass(frozen=True)
class Change:
    """One step of a plan: add or update `peer`, or remove the peer with `public_key`."""

    action: Literal["add", "update", "remove"]
    public_key: str
    peer: Peer | None = None


def _short(key: str) -> str:
    return key[:8] + "…"


def normalize_endpoint(endpoint: str) -> str:
    """'ip:port' or '[ipv6]:port' in canonical form; ValueError otherwise."""
    host, sep, port_s = endpoint.rpartition(":")
    if not sep or not host:
        raise ValueError(f"endpoint {endpoint!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"endpoint {endpoint!r}: {host!r} is not an IP address") from None
    if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
        raise ValueError(f"endpoint {endpoint!r}: port must be 1-65535")
    if ip.version == 6:
        return f"[{ip.compressed}]:{int(port_s)}"
    return f"{ip}:{int(port_s)}"


def normalize_cidrs(cidrs: Iterable[str]) -> tuple[str, ...]:
    """Sorted canonical CIDRs; ValueError on anything that is not a network."""
    out = set()
    for c in cidrs:
        try:
            out.add(ipaddress.ip_network(c, strict=True))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"allowed ip {c!r} is not a valid CIDR: {exc}") from None
    return tuple(str(n) for n in sorted(out, key=lambda n: (n.version, n)))


def validate_peer(peer: Peer) -> Peer:
    """Check one desired peer and return it normalized; ValueError with a clear message."""
    if not is_valid_key(peer.public_key):
        raise ValueError(f"peer public key {peer.public_key!r} is not base64 of 32 bytes")
    who = f"peer {_short(peer.public_key)}"
    try:
        endpoint = normalize_endpoint(peer.endpoint) if peer.endpoint else None
        ips = normalize_cidrs(peer.allowed_ips)
    except ValueError as exc:
        raise ValueError(f"{who}: {exc}") from None
    ka = peer.persistent_keepalive
    if isinstance(ka, bool) or not isinstance(ka, int) or not 0 <= ka <= 65535:
        raise ValueError(f"{who}: persistent_keepalive must be 0-65535, got {ka!r}")
    return Peer(peer.public_key, endpoint, ips, ka)


def validate_peers(desired: Iterable[Peer]) -> list[Peer]:
    """Validate a whole desired list: each peer, no duplicate keys or allowed IPs."""
    out: list[Peer] = []
    keys: set[str] = set()
    owners: dict[str, str] = {}
    for raw in desired:
        peer = validate_peer(raw)
        if peer.public_key in keys:
            raise ValueError(f"peer {_short(peer.public_key)} appears twice")
        keys.add(peer.public_key)
        for ip in peer.allowed_ips:
            if ip in owners:
                raise ValueError(
                    f"allowed ip {ip} given to both peer {_short(owners[ip])} "
                    f"and peer {_short(peer.public_key)}"
                )
            owners[ip] = peer.public_key
        out.append(peer)
    return out


def validate_mesh_peers(desired: Iterable[Peer], subnet: str,
                        own_ip: str | None = None) -> list[Peer]:
    """validate_peers() plus what a node may accept from the control plane: each peer
    routes exactly one overlay address (a /32, or /128) inside `subnet`, never the node's
    own, and its endpoint is a unicast address outside the overlay.

    SECURITY: a peer list is applied as given, so without this a compromised control plane
    channel (or a bug) could route 0.0.0.0/0 or the node's LAN into the tunnel.
    """
    net = ipaddress.ip_network(subnet, strict=False)
    out = validate_peers(desired)
    for peer in out:
        who = f"peer {_short(peer.public_key)}"
        if len(peer.allowed_ips) != 1:
            raise ValueError(f"{who}: allowed ips must be exactly one overlay address, "
                             f"got {', '.join(peer.allowed_ips) or 'none'}")
        cidr = ipaddress.ip_network(peer.allowed_ips[0])
        addr = cidr.network_address
        if (cidr.prefixlen != cidr.max_prefixlen or addr not in net
                or addr in (net.network_address, net.broadcast_address)):
            raise ValueError(f"{who}: allowed ip {cidr} is not one address of the overlay "
                             f"{net}")
        if own_ip and addr == ipaddress.ip_address(own_ip):
            raise ValueError(f"{who}: allowed ip {cidr} is this node's own overlay address")
        if peer.endpoint:
            _check_endpoint(who, peer.endpoint, net)
    return out


def _check_endpoint(who: str, endpoint: str, net: Any) -> None:
    host = endpoint.rpartition(":")[0].strip("[]")
    why = endpoint_problem(host)
    if why is None and ipaddress.ip_address(host) in net:
        why = "inside the overlay (the tunnel cannot carry itself)"
    if why:
        raise ValueError(f"{who}: endpoint {endpoint} is {why}")


def parse_wg_dump(text: str) -> dict[str, Peer]:
    """Peers from `wg show IFACE dump`; the first line (the interface) is skipped."""
    peers: dict[str, Peer] = {}
    for line in text.splitlines()[1:]:
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) != 8:
            raise ValueError(f"wg dump: expected 8 fields in a peer line, got {len(f)}")
        key, _psk, endpoint, ips, _hs, _rx, _tx, keepalive = f
        peers[key] = Peer(
            public_key=key,
            endpoint=None if endpoint == _NONE else endpoint,
            allowed_ips=() if ips in (_NONE, "") else tuple(ips.split(",")),
            persistent_keepalive=0 if keepalive == "off" else int(keepalive),
        )
    return peers


def parse_wg_dump_interface(text: str) -> tuple[str | None, int]:
    """(public key or None, listen port) from the first line of `wg show IFACE dump`."""
    lines = text.splitlines()
    if not lines:
        raise ValueError("wg dump: empty output")
    f = lines[0].split("\t")
    if len(f) != 4:
        raise ValueError(f"wg dump: expected 4 fields in the interface line, got {len(f)}")
    # SECURITY: f[0] is the private key; it is deliberately dropped here.
    pub = None if f[1] == _NONE else f[1]
    return pub, int(f[2])


def _same(current: Peer, want: Peer) -> bool:
    """True when the interface already has what `want` asks for."""
    if set(normalize_cidrs(current.allowed_ips)) != set(want.allowed_ips):
        return False
    if current.persistent_keepalive != want.persistent_keepalive:
        return False
    # No desired endpoint: keep whatever WireGuard learned from the peer (roaming);
    # `wg set` cannot clear an endpoint anyway.
    if want.endpoint is None:
        return True
    if current.endpoint is None:
        return False
    try:
        return normalize_endpoint(current.endpoint) == want.endpoint
    except ValueError:
        return False


def plan(current: Mapping[str, Peer], desired: Iterable[Peer]) -> list[Change]:
    """Changes turning `current` into `desired`: removes, then updates, then adds."""
    want = {p.public_key: p for p in validate_peers(desired)}
    removes = [Change("remove", k) for k in sorted(current) if k not in want]
    updates, adds = [], []
    for key in sorted(want):
        if key not in current:
            adds.append(Change("add", key, want[key]))
        elif not _same(current[key], want[key]):
            updates.append(Change("update", key, want[key]))
    return removes + updates + adds


def to_wg_args(iface: str, changes: Iterable[Change]) -> list[str]:
    """One `wg set IFACE ...` argv applying all changes; [] when there is nothing to do."""
    args: list[str] = []
    for ch in changes:
        args += ["peer", ch.public_key]
        if ch.action == "remove":
            args.append("remove")
            continue
        if ch.peer is None:
            raise ValueError(f"{ch.action} of peer {_short(ch.public_key)} without peer data")
        p = ch.peer
        if p.endpoint:
            args += ["endpoint", p.endpoint]
        args += ["allowed-ips", ",".join(p.allowed_ips)]
        ka = p.persistent_keepalive
        args += ["persistent-keepalive", str(ka) if ka else "off"]
    return ["wg", "set", iface, *args] if args else []


def counts(changes: Iterable[Change]) -> dict[str, int]:
    """{"added", "updated", "removed"} totals for a plan."""
    out = {"added": 0, "updated": 0, "removed": 0}
    names = {"add": "added", "update": "updated", "remove": "removed"}
    for ch in changes:
        out[names[ch.action]] += 1
    return out
