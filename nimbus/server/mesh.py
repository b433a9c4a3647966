"""The WireGuard mesh as data: the control plane's key and every node's desired peer list."""

from __future__ import annotations

import logging
import threading
from typing import Any

from nimbus.errors import ConfigError, NimbusError
from nimbus.server.state import State
from nimbus.server.tasks import task_type

log = logging.getLogger("nimbus.mesh")
KEEPALIVE_SEC = 25
UPDATE_PEERS = "update_wireguard_peers"


def control_plane_key(state: State) -> tuple[str, str]:
    """(private, public) WireGuard key of the control plane, created once (0600 file)."""
    from nimbus.security import wgkeys
    from nimbus.store.files import write_private

    with state.lock:
        cached = state.extras.get("wg_key")
        if cached:
            return cached
        path = state.data_dir / "wg.key"
        if not path.exists():
            write_private(path, wgkeys.generate_keypair()[0] + "\n")
        private = path.read_text().strip()
        state.extras["wg_key"] = (private, wgkeys.public_key(private))
        return state.extras["wg_key"]


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def control_plane_peer(state: State) -> dict[str, Any]:
    cfg = state.config
    host = cfg.public_address or "127.0.0.1"
    return {"node_id": "control-plane", "name": "control-plane",
            "public_key": control_plane_key(state)[1],
            "endpoint": endpoint(host, cfg.wireguard_port),
            "allowed_ips": [f"{cfg.overlay_ip}/32"], "persistent_keepalive": KEEPALIVE_SEC}


def node_peer(node: dict[str, Any]) -> dict[str, Any]:
    return {"node_id": node["id"], "name": node["name"],
            "public_key": node["wireguard_public_key"],
            "endpoint": endpoint(node["ip_address"], node.get("wireguard_port", 51820)),
            "allowed_ips": [f"{node['wireguard_ip']}/32"],
            "persistent_keepalive": KEEPALIVE_SEC}


def joined_nodes(nodes: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted((n for n in nodes.values() if n["state"] != "pending"),
                  key=lambda n: n["wireguard_ip"])


def peers_for(state: State, node_id: str | None) -> list[dict[str, Any]]:
    """Every other joined node, plus the control plane (unless it is asking for itself).

    The control plane's own list (node_id None) also has pending nodes: the join request
    comes through the tunnel (3.4), so the control plane must know the key from the join
    token before the node has joined. Only the token holder has that key, and the API over
    the tunnel still requires the join secret or a client certificate.
    """
    nodes = state.store.read("nodes")
    if node_id is None:
        members = sorted(nodes.values(), key=lambda n: n["wireguard_ip"])
        return [node_peer(n) for n in members]
    peers = [node_peer(n) for n in joined_nodes(nodes) if n["id"] != node_id]
    peers.insert(0, control_plane_peer(state))
    return peers


@task_type(UPDATE_PEERS, coalesce=True)
def _render_peers(state: State, node_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"peers": peers_for(state, node_id)}


def mesh_changed(state: State) -> None:
    """Membership or endpoints changed: reconcile the control plane's own interface now."""
    hook = state.extras.get("mesh_hook")
    if hook is not None:
        hook()


def start_network(state: State) -> Any:
    """Bring up the control plane's WireGuard interface (root, unless --no-wireguard)."""
    if not state.config.wireguard:
        return None
    from nimbus.sysrun import Runner
    from nimbus.wireguard.apply import WireGuardInterface
    from nimbus.wireguard.config import Peer

    cfg = state.config
    iface = WireGuardInterface(cfg.interface, Runner())
    prefix = cfg.wireguard_subnet.split("/")[1]
    try:
        kind = iface.up(control_plane_key(state)[0], f"{cfg.overlay_ip}/{prefix}",
                        cfg.wireguard_port)
    except ConfigError:
        raise
    except NimbusError as exc:
        raise ConfigError(
            f"bringing up WireGuard interface {cfg.interface}: {exc}; run as root with "
            "wireguard-tools (plus wireguard-go where the kernel has no WireGuard), "
            "or use --no-wireguard") from None
    log.info("WireGuard interface %s is up (%s), overlay %s", cfg.interface, kind, cfg.overlay_ip)
    lock = threading.Lock()

    def reconcile() -> None:
        with lock:
            desired = [Peer.from_dict(p) for p in peers_for(state, None)]
            try:
                iface.apply_peers(desired)
            except Exception as exc:  # noqa: BLE001 - logged, retried on the next change
                log.error("applying control-plane peers failed: %s", exc)

    state.extras["mesh_hook"] = reconcile
    reconcile()

    def stop() -> None:
        # The interface stays up across restarts so that the mesh keeps working.
        state.extras.pop("mesh_hook", None)

    return stop
