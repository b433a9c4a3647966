"""TOML configuration for `nimbus serve` and `nimbus agent`, and the data-dir defaults."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nimbus.errors import ConfigError
from nimbus.wire import WIREGUARD_PORT, control_plane_ip

SERVER_CONFIG_PATH = Path("/etc/nimbus/api.toml")
AGENT_CONFIG_PATH = Path("/etc/nimbus/agent.toml")


def default_data_dir() -> Path:
    """NIMBUS_DATA_DIR, else /var/lib/nimbus as root, else ~/.nimbus."""
    env = os.environ.get("NIMBUS_DATA_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/nimbus")
    return Path.home() / ".nimbus"


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen address must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass
class ServerConfig:
    """Settings of the control plane; every field can come from api.toml."""

    listen: str = "0.0.0.0:8443"
    data_dir: str = ""
    wireguard_subnet: str = "10.106.103.0/24"
    wireguard: bool = True
    wireguard_port: int = WIREGUARD_PORT
    interface: str = "wg-nimbus"
    public_address: str = ""
    public_url: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    heartbeat_interval_sec: int = 10
    join_token_ttl_sec: int = 600
    node_cert_lifetime_sec: int = 30 * 86400
    long_poll_sec: int = 25
    threads: int = 64
    max_threads: int = 512
    # The connection layer (nimbus.server.http.gate; docs/decisions.md "The connection layer").
    request_timeout_sec: int = 10        # TLS handshake + complete request must arrive in this
    idle_timeout_sec: int = 65           # a kept-alive connection may idle this long
    max_connections_per_source: int = 512  # open connections per client IP address
    max_connections: int = 20000         # open connections in total (the oldest waiting go)
    max_buffered_per_source_mib: int = 16  # unfinished input + unread output per address
    max_buffered_total_mib: int = 256    # the same, for the whole server
    log_level: str = "info"
    extra_sans: list[str] = field(default_factory=list)
    audit_max_bytes: int = 10 * 1024 * 1024
    audit_files: int = 5
    audit_aggregate_sec: int = 60

    def validate(self) -> ServerConfig:
        parse_listen(self.listen)
        try:
            net = ipaddress.ip_network(self.wireguard_subnet, strict=True)
        except ValueError:
            raise ConfigError(
                f"wireguard_subnet {self.wireguard_subnet!r} is not a network") from None
        if net.version != 4 or not 16 <= net.prefixlen <= 29:
            raise ConfigError("wireguard_subnet must be an IPv4 network from /16 to /29")
        _port("wireguard_port", self.wireguard_port)
        _range("heartbeat_interval_sec", self.heartbeat_interval_sec, 1, 3600)
        _range("join_token_ttl_sec", self.join_token_ttl_sec, 1, 7 * 86400)
        _range("node_cert_lifetime_sec", self.node_cert_lifetime_sec, 30, 398 * 86400)
        _range("long_poll_sec", self.long_poll_sec, 0, 120)
        _range("threads", self.threads, 1, 4096)
        _range("max_threads", self.max_threads, -1, 16384)
        _range("audit_max_bytes", self.audit_max_bytes, 64 * 1024, 1024**3)
        _range("audit_files", self.audit_files, 1, 100)
        _range("audit_aggregate_sec", self.audit_aggregate_sec, 0, 3600)
        _range("request_timeout_sec", self.request_timeout_sec, 1, 10)
        _range("idle_timeout_sec", self.idle_timeout_sec, 1, 3600)
        _range("max_connections_per_source", self.max_connections_per_source, 1, 65536)
        _range("max_connections", self.max_connections, 16, 1_000_000)
        _range("max_buffered_per_source_mib", self.max_buffered_per_source_mib, 2, 65536)
        _range("max_buffered_total_mib", self.max_buffered_total_mib, 2, 1_000_000)
        _interface_name(self.interface)
        if self.public_address:
            _ip("public_address", self.public_address)
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key must be set together")
        return self

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()

    @property
    def overlay_ip(self) -> str:
        return control_plane_ip(self.wireguard_subnet)

    @property
    def overlay_api_url(self) -> str:
        return f"https://{self.overlay_ip}:{parse_listen(self.listen)[1]}"

    @property
    def direct_api_url(self) -> str:
        """The API URL used when there is no tunnel (--no-wireguard)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host, port = parse_listen(self.listen)
        if host in ("0.0.0.0", "::"):
            host = self.public_address or "127.0.0.1"
        return f"https://{_bracket(host)}:{port}"


@dataclass
class AgentConfig:
    """Settings of a node agent; written to agent.toml after a successful join."""

    data_dir: str = ""
    api_url: str = ""
    node_id: str = ""
    wireguard: bool = True
    interface: str = "wg-nimbus"
    wireguard_port: int = WIREGUARD_PORT
    wg_ip: str = ""
    subnet: str = ""
    heartbeat_interval_sec: int = 10
    long_poll_sec: int = 25
    log_level: str = "info"
    # The local Docker Engine for swarm tasks; "" = the engine's default socket.
    docker_host: str = ""
    # SeaweedFS's `weed` for S3 instances; "" = `weed` on PATH.
    weed_path: str = ""

    def validate(self) -> AgentConfig:
        _port("wireguard_port", self.wireguard_port)
        if self.docker_host and not self.docker_host.startswith("unix:///"):
            raise ConfigError("docker_host must be a unix:///path socket URL (or empty)")
        _range("heartbeat_interval_sec", self.heartbeat_interval_sec, 1, 3600)
        _interface_name(self.interface)
        if self.weed_path and not Path(self.weed_path).is_absolute():
            raise ConfigError("weed_path must be an absolute path (or empty for PATH)")
        return self

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _port(name: str, value: int) -> None:
    _range(name, value, 1, 65535)


def _range(name: str, value: int, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be a whole number from {lo} to {hi}")


def _ip(name: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{name} must be an IP address, got {value!r}") from None


def _interface_name(name: str) -> None:
    if not (1 <= len(name) <= 15) or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(f"interface name {name!r} must be 1-15 letters, digits, '-', '_'")


def load(cls: type[Any], path: Path | None, default_path: Path,
         overrides: dict[str, Any] | None = None) -> Any:
    """Read TOML (an explicit path must exist), apply non-None overrides, validate."""
    from nimbus.compat import tomllib

    values: dict[str, Any] = {}
    source = path or (default_path if default_path.exists() else None)
    if source is not None:
        try:
            values = tomllib.loads(Path(source).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {source} does not exist") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"reading config {source}: {exc}") from None
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown setting {key!r} in {source}")
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return cls(**values).validate()
    except TypeError as exc:
        raise ConfigError(f"invalid config: {exc}") from None


def dump_toml(obj: Any) -> str:
    import tomli_w

    return tomli_w.dumps({k: v for k, v in dataclasses.asdict(obj).items() if v not in ("", None)})
