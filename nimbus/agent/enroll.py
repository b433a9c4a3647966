"""Joining with a one-time token (tunnel, key + CSR, POST /v1/nodes/join) and resuming after."""

from __future__ import annotations

import ipaddress
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nimbus import __version__, wire
from nimbus.agent.files import AgentFiles
from nimbus.config import AgentConfig
from nimbus.errors import ConfigError, NimbusError, Unavailable
from nimbus.logs import mask

log = logging.getLogger("nimbus.agent.enroll")
JOIN_ATTEMPTS = 5


def read_token(token: str | None, token_file: str | None, stdin: Any) -> str:
    """The join token from --token, a file, or stdin (`--token-file -`)."""
    if token and token_file:
        raise ConfigError("give either --token or --token-file, not both")
    if token_file == "-":  # noqa: S105 - "-" means stdin, not a password
        text = stdin.read()
    elif token_file:
        try:
            text = Path(token_file).read_text()
        except OSError as exc:
            raise ConfigError(f"reading token file {token_file}: {exc.strerror or exc}") from None
    elif token:
        text = token
    else:
        raise ConfigError("--join needs --token TOKEN or --token-file FILE (- for stdin)")
    return text.strip()


def overlay_cidr(wg_ip: str, subnet: str) -> str:
    """The node's interface address, e.g. 10.106.103.2/24."""
    return f"{wg_ip}/{ipaddress.ip_network(subnet, strict=False).prefixlen}"


def ip_target(config: AgentConfig, state: dict[str, Any]) -> tuple[str, int] | None:
    """Where the node's public/LAN IP is measured towards: the control plane's endpoint.

    Over the tunnel the API URL is an overlay address, which would report the overlay IP,
    so the control plane's WireGuard endpoint is used instead.
    """
    endpoint = state.get("control_plane_endpoint") if config.wireguard else None
    if endpoint:
        host, _, port = str(endpoint).rpartition(":")
        return host.strip("[]"), int(port) if port.isdigit() else wire.WIREGUARD_PORT
    parts = urlsplit(config.api_url)
    return (parts.hostname, parts.port or 443) if parts.hostname else None


def _interface(config: AgentConfig) -> Any:
    from nimbus.sysrun import Runner
    from nimbus.wireguard.apply import WireGuardInterface

    return WireGuardInterface(config.interface, Runner())


def _tunnel_up(settings: AgentConfig, token: dict[str, Any]) -> tuple[Any, bool]:
    """Bring up the interface with the control plane as its only peer: (iface, created)."""
    from nimbus.wireguard.config import Peer

    iface = _interface(settings)
    existed = iface.exists()
    kind = iface.up(token["wg_private_key"], overlay_cidr(token["wg_ip"], token["subnet"]),
                    settings.wireguard_port)
    log.info("WireGuard interface %s is up (%s), overlay IP %s", settings.interface, kind,
             token["wg_ip"])
    try:
        iface.apply_peers([Peer(public_key=token["wg_public_key"],
                                endpoint=token["wg_endpoint"],
                                allowed_ips=(f"{wire.control_plane_ip(token['subnet'])}/32",))])
    except (NimbusError, ValueError):
        if not existed:
            iface.down()
        raise
    return iface, not existed


def _post_join(api_url: str, ca_pem: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/nodes/join, verifying the server against the token's CA only.

    SECURITY: the secret is in the body, so it is only sent once the TLS handshake has
    proven the server holds a certificate from the token's CA; a verification failure
    is final, never retried and never downgraded.
    """
    from nimbus.client import ApiClient

    client = ApiClient(api_url, ca_pem=ca_pem, timeout=30)
    try:
        for attempt in range(1, JOIN_ATTEMPTS + 1):
            try:
                return client.request("POST", "/v1/nodes/join", body)
            except Unavailable as exc:
                if "TLS verification" in exc.message or attempt == JOIN_ATTEMPTS:
                    raise
                delay = min(8.0, 2.0 ** (attempt - 1))
                log.warning("join: %s; retrying in %.0fs", exc, delay)
                time.sleep(delay)
    finally:
        client.close()
    raise AssertionError("unreachable")


def join(token_text: str, settings: AgentConfig, api_url: str | None,
         files: AgentFiles) -> tuple[AgentConfig, Any]:
    """Enroll this node; returns its saved config and its WireGuard interface (or None)."""
    from nimbus.agent import metrics
    from nimbus.agent.files import key_matches
    from nimbus.security import pki

    if files.enrolled():
        raise ConfigError(f"{files.root} already holds a joined node; resume with `nimbus "
                          "agent` or choose another --data-dir")
    token = wire.decode_join_token(token_text)
    node_id = token["node_id"]
    url = (api_url or token["api_url"]).rstrip("/")
    from nimbus.security import wgkeys

    csr_pem, key_pem = pki.make_csr(node_id)  # SECURITY: the key never leaves this node
    # SECURITY: the token's WireGuard key only opens the join tunnel; the node's lasting
    # key is made here, and only its public half is sent.
    wg_private, wg_public = wgkeys.generate_keypair()
    config = AgentConfig(
        data_dir=settings.data_dir, api_url=url, node_id=node_id,
        wireguard=settings.wireguard, interface=settings.interface,
        wireguard_port=settings.wireguard_port, wg_ip=token["wg_ip"], subnet=token["subnet"],
        heartbeat_interval_sec=settings.heartbeat_interval_sec,
        long_poll_sec=settings.long_poll_sec, log_level=settings.log_level,
        docker_host=settings.docker_host)
    state = {"control_plane_endpoint": token["wg_endpoint"]}
    target = ip_target(config, state)
    body = wire.build(wire.JOIN_REQUEST, node_id=node_id, secret=token["secret"], csr=csr_pem,
                      agent_version=__version__, wireguard_port=settings.wireguard_port,
                      wireguard_public_key=wg_public, hostname=metrics.hostname(),
                      arch=metrics.arch(),
                      ip_address=(metrics.endpoint_ip(*target) if target else None) or None)
    iface, created = _tunnel_up(settings, token) if settings.wireguard else (None, False)
    log.info("joining %s as %s", url, node_id)
    try:
        resp = _post_join(url, token["ca_pem"], body)
        if pki.cert_info(resp["cert_pem"]).common_name != node_id or not key_matches(
                key_pem, resp["cert_pem"]):
            raise Unavailable("the control plane returned a certificate for another key")
    except BaseException:
        if created:
            # wg-quick habit: do not leave a half-configured interface behind.
            log.info("join failed; removing WireGuard interface %s", settings.interface)
            iface.down()
        raise
    config.heartbeat_interval_sec = int(resp.get("heartbeat_interval_sec")
                                        or config.heartbeat_interval_sec)
    state.update(joined_at=round(time.time(), 3), peers=resp.get("peers") or [])
    files.save_enrollment(config.validate(), token["ca_pem"], resp["cert_pem"], key_pem,
                          wg_private if settings.wireguard else None, state)
    log.info("joined as %s; certificate serial %s saved in %s", node_id,
             mask(pki.cert_info(resp["cert_pem"]).serial, 8), files.root)
    if iface is not None:
        # The control plane moves its peer for this node to the new key once the join
        # answer has left; the first request after this handshakes with the new key.
        iface.up(wg_private, overlay_cidr(token["wg_ip"], token["subnet"]),
                 settings.wireguard_port)
        log.info("WireGuard key of %s switched to the node's own key %s", settings.interface,
                 mask(wg_public, 8))
        _apply_saved_peers(iface, state["peers"], token["subnet"])
    return config, iface


def _apply_saved_peers(iface: Any, peers: list[dict[str, Any]], subnet: str) -> None:
    from nimbus.wireguard.config import Peer, validate_mesh_peers

    if not peers:  # never wipe the interface (and the control-plane peer) for lack of data
        return
    try:
        iface.apply_peers(validate_mesh_peers((Peer.from_dict(p) for p in peers), subnet))
    except (NimbusError, ValueError) as exc:
        # The control-plane peer is already in place, so the API stays reachable and the
        # next update_wireguard_peers task brings the rest.
        log.error("applying the mesh peer list failed: %s", exc)


def resume(files: AgentFiles, explicit: dict[str, Any]) -> tuple[AgentConfig, Any]:
    """Load the saved config (explicit settings win) and re-create the tunnel from wg.key."""
    from nimbus.config import load

    if not files.enrolled():
        raise ConfigError(f"this node has not joined yet (no credentials in {files.root}); "
                          "run `nimbus agent --join --token-file FILE` first")
    files.recover()
    config: AgentConfig = load(AgentConfig, files.config, files.config, explicit)
    if not config.node_id or not config.api_url:
        raise ConfigError(f"{files.config} lacks node_id or api_url; join again")
    config.data_dir = str(files.root)
    iface = None
    if config.wireguard:
        iface = _interface(config)
        private_key = files.read(files.wg_key).strip()
        kind = iface.up(private_key, overlay_cidr(config.wg_ip, config.subnet),
                        config.wireguard_port)
        log.info("WireGuard interface %s is up (%s), overlay IP %s", config.interface, kind,
                 config.wg_ip)
        _apply_saved_peers(iface, files.load_state().get("peers") or [], config.subnet)
    return config, iface
