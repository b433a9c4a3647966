"""TOML configuration: unknown keys, types, ranges, defaults and derived addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from nimbus import config as cfg
from nimbus.errors import ConfigError

MISSING = Path("/nonexistent/nimbus/api.toml")


def load(tmp_path: Path, text: str, cls=cfg.ServerConfig, **overrides):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return cfg.load(cls, path, MISSING, overrides)


def test_defaults_without_a_file():
    c = cfg.load(cfg.ServerConfig, None, MISSING)
    assert c.listen == "0.0.0.0:8443" and c.wireguard_subnet == "10.106.103.0/24"
    assert c.overlay_ip == "10.106.103.1"
    assert c.overlay_api_url == "https://10.106.103.1:8443"
    assert c.direct_api_url == "https://127.0.0.1:8443"


def test_values_and_overrides(tmp_path):
    c = load(tmp_path, 'listen = "127.0.0.1:9443"\nwireguard_subnet = "10.9.0.0/24"\n'
             'public_address = "203.0.113.5"\n', data_dir="/srv/nimbus", listen=None)
    assert c.listen == "127.0.0.1:9443" and c.overlay_ip == "10.9.0.1"
    assert c.data_path == Path("/srv/nimbus")
    assert c.direct_api_url == "https://127.0.0.1:9443"
    c = load(tmp_path, 'listen = "0.0.0.0:8443"\npublic_address = "203.0.113.5"\n')
    assert c.direct_api_url == "https://203.0.113.5:8443"
    c = load(tmp_path, 'public_url = "https://cp.example:443/"\n')
    assert c.direct_api_url == "https://cp.example:443"


def test_unknown_key_is_refused_with_its_name(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting 'listne'"):
        load(tmp_path, 'listne = "0.0.0.0:8443"\n')
    with pytest.raises(ConfigError, match="unknown setting 'api_url'"):
        load(tmp_path, 'api_url = "https://x"\n')  # an agent setting in the server config


@pytest.mark.parametrize("text,message", [
    ("heartbeat_interval_sec = 0", "heartbeat_interval_sec"),
    ("heartbeat_interval_sec = 3601", "heartbeat_interval_sec"),
    ('heartbeat_interval_sec = "10"', "heartbeat_interval_sec"),
    ("heartbeat_interval_sec = true", "heartbeat_interval_sec"),
    ("wireguard_port = 0", "wireguard_port"),
    ("wireguard_port = 70000", "wireguard_port"),
    ("threads = 0", "threads"),
    ("long_poll_sec = 121", "long_poll_sec"),
    ("node_cert_lifetime_sec = 10", "node_cert_lifetime_sec"),
    ('wireguard_subnet = "10.106.103.0/8"', "wireguard_subnet"),
    ('wireguard_subnet = "10.106.103.1/24"', "wireguard_subnet"),
    ('wireguard_subnet = "fd00::/64"', "wireguard_subnet"),
    ('wireguard_subnet = "nope"', "wireguard_subnet"),
    ('listen = "8443"', "listen"),
    ('listen = "0.0.0.0:99999"', "listen"),
    ('interface = "this-name-is-too-long"', "interface"),
    ('interface = "wg 0"', "interface"),
    ('public_address = "cp.example"', "public_address"),
    ('tls_cert = "/x.crt"', "tls_cert and tls_key"),
])
def test_bad_values_are_refused_with_the_setting_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text + "\n")


def test_unparseable_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="reading config"):
        load(tmp_path, "listen = \n")
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load(cfg.ServerConfig, tmp_path / "nope.toml", MISSING)


def test_default_path_is_used_only_when_present(tmp_path):
    default = tmp_path / "api.toml"
    default.write_text('listen = "127.0.0.1:1"\n')
    assert cfg.load(cfg.ServerConfig, None, default).listen == "127.0.0.1:1"


def test_agent_config(tmp_path):
    c = load(tmp_path, 'api_url = "https://10.106.103.1:8443"\nnode_id = "node-1"\n',
             cls=cfg.AgentConfig)
    assert c.api_url.endswith(":8443") and c.interface == "wg-nimbus"
    with pytest.raises(ConfigError, match="unknown setting 'listen'"):
        load(tmp_path, 'listen = "x:1"\n', cls=cfg.AgentConfig)
    with pytest.raises(ConfigError, match="heartbeat_interval_sec"):
        load(tmp_path, "heartbeat_interval_sec = 0\n", cls=cfg.AgentConfig)


def test_dump_round_trips(tmp_path):
    c = cfg.AgentConfig(api_url="https://x:1", node_id="node-1", heartbeat_interval_sec=5)
    path = tmp_path / "agent.toml"
    path.write_text(cfg.dump_toml(c))
    assert cfg.load(cfg.AgentConfig, path, MISSING) == c


def test_data_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("NIMBUS_DATA_DIR", str(tmp_path / "d"))
    assert cfg.default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("NIMBUS_DATA_DIR")
    monkeypatch.setattr(cfg.os, "geteuid", lambda: 0)
    assert cfg.default_data_dir() == Path("/var/lib/nimbus")
    monkeypatch.setattr(cfg.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cfg.default_data_dir() == tmp_path / ".nimbus"
