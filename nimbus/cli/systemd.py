"""Hardened systemd units that run this zipapp by absolute path."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click

from nimbus.errors import ConfigError

UNIT_DIR = Path("/etc/systemd/system")


def executable() -> list[str]:
    """How to run this same Nimbus again: the zipapp path, or python -m nimbus."""
    argv0 = Path(sys.argv[0]).resolve()
    if argv0.suffix == ".pyz" and argv0.exists():
        return [sys.executable, str(argv0)]
    return [sys.executable, "-m", "nimbus"]


def render_unit(description: str, args: list[str], data_dir: str, network: bool = True) -> str:
    exec_start = " ".join([*executable(), *args])
    caps = "CAP_NET_ADMIN CAP_NET_BIND_SERVICE" if network else "CAP_NET_BIND_SERVICE"
    return f"""[Unit]
Description={description}
Documentation=https://example.invalid/nimbus/docs
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
Restart=always
RestartSec=2
Environment=PYTHONUNBUFFERED=1
StateDirectory=nimbus
ReadWritePaths={data_dir} /run /var/run
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=no
SystemCallArchitectures=native
CapabilityBoundingSet={caps}
AmbientCapabilities={caps}
DeviceAllow=/dev/net/tun rw
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""


def install_unit(name: str, description: str, args: list[str], data_dir: str,
                 dry_run: bool) -> None:
    unit = render_unit(description, args, data_dir)
    if dry_run:
        click.echo(unit, nl=False)
        return
    if not UNIT_DIR.is_dir() or shutil.which("systemctl") is None:
        raise ConfigError("systemd was not found on this machine; use --dry-run to see the unit")
    path = UNIT_DIR / name
    path.write_text(unit)
    path.chmod(0o644)
    for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", name]):
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ConfigError(f"{' '.join(argv)} failed: {result.stderr.strip()[:200]}")
    click.echo(f"installed and started {path}")
