"""`nimbus agent install --dry-run`: a hardened unit that systemd accepts, and no secrets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def _unit(cli, tmp_path: Path, *args: str) -> str:
    return cli.run("agent", *args, "install", "--dry-run", "--data-dir",
                   str(tmp_path / "agent-data")).stdout


def test_agent_unit_runs_this_nimbus_by_absolute_path_with_hardening(cli, tmp_path):
    unit = _unit(cli, tmp_path, "--no-wireguard")
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = exec_start.removeprefix("ExecStart=").split()
    assert Path(argv[0]).is_absolute() and Path(argv[0]).exists()
    assert argv[-4:] == ["agent", "--data-dir", str(tmp_path / "agent-data"), "--no-wireguard"]
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "UMask=0077",
                 "Restart=always", "WantedBy=multi-user.target"):
        assert line in unit
    assert "Description=Nimbus node agent" in unit


def test_agent_unit_passes_systemd_analyze_verify(cli, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    path = tmp_path / "nimbus-agent.service"
    path.write_text(_unit(cli, tmp_path))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "nimbus-agent.service" not in result.stderr, result.stderr


def test_agent_install_refuses_to_put_a_join_token_in_a_unit(cli, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("nimbus-join-v1.secret")
    result = cli.run("agent", "--join", "--token-file", str(token_file), "install",
                     "--dry-run", check=False)
    assert result.returncode != 0 and "join first" in result.stderr
    assert "secret" not in result.stdout


def _serve_unit(cli, *args: str) -> str:
    return cli.run("serve", "install", "--dry-run", *args).stdout


def _lines(unit: str, key: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in unit.splitlines() if ln.startswith(key + "=")]


def test_serve_unit_follows_the_config_file(cli, tmp_path):
    data = tmp_path / "cp-data"
    config = tmp_path / "api.toml"
    config.write_text(f'listen = "127.0.0.1:8443"\ndata_dir = "{data}"\nwireguard = false\n')
    unit = _serve_unit(cli, "--config", str(config))
    exec_start = _lines(unit, "ExecStart")[0].split()
    assert exec_start[-3:] == ["serve", "--config", str(config)]
    # ProtectSystem=strict: the data dir named only in the file must still be writable.
    assert str(data) in _lines(unit, "ReadWritePaths")[0].split()
    # No WireGuard, port >= 1024: no capability at all, no tun device.
    assert _lines(unit, "CapabilityBoundingSet") == [""]
    assert not _lines(unit, "AmbientCapabilities") and "DeviceAllow" not in unit


def test_serve_unit_grants_capabilities_only_as_needed(cli):
    wg_high = _serve_unit(cli)  # defaults: WireGuard on, :8443
    assert _lines(wg_high, "CapabilityBoundingSet") == ["CAP_NET_ADMIN"]
    assert "DeviceAllow=/dev/net/tun rw" in wg_high
    low = _serve_unit(cli, "--listen", "0.0.0.0:443", "--no-wireguard")
    assert _lines(low, "CapabilityBoundingSet") == ["CAP_NET_BIND_SERVICE"]
    assert _lines(low, "AmbientCapabilities") == ["CAP_NET_BIND_SERVICE"]
    both = cli.run("serve", "--listen", "0.0.0.0:443", "install", "--dry-run").stdout
    assert _lines(both, "CapabilityBoundingSet") == ["CAP_NET_ADMIN CAP_NET_BIND_SERVICE"]


def test_units_survive_an_upgrade_with_a_read_only_home(cli, tmp_path):
    for unit in (_serve_unit(cli), _unit(cli, tmp_path)):
        assert "ProtectHome=read-only" in unit
        # The zipapp extracts itself into the cache directory systemd makes writable.
        assert "Environment=NIMBUS_CACHE=/var/cache/nimbus" in unit
        assert "Environment=SHIV_ROOT=/var/cache/nimbus" in unit
        assert "CacheDirectory=nimbus" in unit
        assert "StateDirectoryMode=0700" in unit
        assert "example.invalid" not in unit
        for doc in _lines(unit, "Documentation"):
            assert doc.startswith("file:///") and Path(doc.removeprefix("file://")).is_file()


def test_agent_unit_follows_the_saved_config(cli, tmp_path):
    data = tmp_path / "agent-data"
    data.mkdir(mode=0o700)
    (data / "agent.toml").write_text('node_id = "node-0123456789abcdef"\nwireguard = false\n')
    unit = _unit(cli, tmp_path)  # no --no-wireguard: the join saved wireguard = false
    assert _lines(unit, "CapabilityBoundingSet") == [""] and "DeviceAllow" not in unit
    settings = tmp_path / "agent.toml"
    settings.write_text(f'data_dir = "{data}"\n')
    unit = cli.run("agent", "install", "--dry-run", "--config", str(settings)).stdout
    assert str(data) in _lines(unit, "ReadWritePaths")[0].split()


@pytest.mark.parametrize("args", [[], ["--no-wireguard", "--listen", "0.0.0.0:443"]])
def test_serve_unit_passes_systemd_analyze_verify(cli, tmp_path, args):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    path = tmp_path / "nimbus.service"
    path.write_text(_serve_unit(cli, *args))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "nimbus.service" not in result.stderr, result.stderr


def test_install_without_systemd_fails_before_writing_anything(cli):
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs here: this test is for machines without it")
    unit = Path("/etc/systemd/system/nimbus.service")
    existed = unit.exists()
    result = cli.run("serve", "install", "--no-wireguard", check=False)
    assert result.returncode == 6 and result.stderr.count("\n") == 1, result.stderr
    assert "systemd is not running" in result.stderr
    assert unit.exists() == existed
    result = cli.run("agent", "install", "--no-wireguard", check=False)
    assert result.returncode == 6 and "nothing was installed" in result.stderr


def test_serve_install_rejects_a_missing_config_file(cli, tmp_path):
    result = cli.run("serve", "install", "--dry-run", "--config", str(tmp_path / "nope.toml"),
                     check=False)
    assert result.returncode == 6 and "does not exist" in result.stderr
