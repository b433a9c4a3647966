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
