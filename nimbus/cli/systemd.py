"""Hardened systemd units that run this zipapp by absolute path.

The unit is rendered from the effective settings (flags over the config file over defaults):
the data dir it may write, and only the capabilities the settings need — CAP_NET_ADMIN for
WireGuard, CAP_NET_BIND_SERVICE only for a port below 1024.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from nimbus.errors import ConfigError

UNIT_DIR = Path("/etc/systemd/system")
SYSTEMD_RUNTIME = Path("/run/systemd/system")  # exists only when systemd is PID 1 (sd_booted)
STATE_DIR = "/var/lib/nimbus"
# ProtectHome=read-only makes ~/.shiv unwritable: the zipapp extracts itself here instead
# (NIMBUS_CACHE; SHIV_ROOT for zipapps built before NIMBUS_CACHE existed).
CACHE_DIR = "/var/cache/nimbus"


@dataclass(frozen=True)
class UnitSpec:
    """What a unit needs to know about the service it runs."""

    name: str
    description: str
    args: list[str]
    data_dir: str
    wireguard: bool
    low_port: bool = False  # binds a TCP/UDP port below 1024


def executable() -> list[str]:
    """How to run this same Nimbus again: the zipapp path, or python -m nimbus."""
    argv0 = Path(sys.argv[0]).resolve()
    if argv0.suffix == ".pyz" and argv0.exists():
        return [sys.executable, str(argv0)]
    return [sys.executable, "-m", "nimbus"]


def documentation() -> str | None:
    """A file: URI of the configuration reference in the checkout this Nimbus came from.

    Running from the source tree, or from dist/nimbus.pyz inside it, the repository's docs are
    right there; a zipapp copied elsewhere carries no docs, so the unit names none.
    """
    here = Path(sys.argv[0]).resolve()
    candidates = [here.parent.parent, Path(__file__).resolve().parents[2]]
    for root in candidates:
        doc = root / "docs" / "configuration.md"
        if doc.is_file():
            return doc.as_uri()
    return None


def capabilities(spec: UnitSpec) -> list[str]:
    caps = []
    if spec.wireguard:
        caps.append("CAP_NET_ADMIN")
    if spec.low_port:
        caps.append("CAP_NET_BIND_SERVICE")
    return caps


def render_unit(spec: UnitSpec) -> str:
    exec_start = " ".join([*executable(), *spec.args])
    caps = capabilities(spec)
    doc = documentation()
    writable = [spec.data_dir] if spec.data_dir != STATE_DIR else []
    lines = [
        "[Unit]",
        f"Description={spec.description}",
        *([f"Documentation={doc}"] if doc else []),
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
        "Restart=always",
        "RestartSec=2",
        "Environment=PYTHONUNBUFFERED=1",
        f"Environment=NIMBUS_CACHE={CACHE_DIR}",
        f"Environment=SHIV_ROOT={CACHE_DIR}",
        "StateDirectory=nimbus",
        "StateDirectoryMode=0700",
        "CacheDirectory=nimbus",
        "CacheDirectoryMode=0700",
        f"ReadWritePaths={' '.join([*writable, '/run'])}",
        "UMask=0077",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        # An empty bounding set drops every capability.
        f"CapabilityBoundingSet={' '.join(caps)}",
        *([f"AmbientCapabilities={' '.join(caps)}"] if caps else []),
        *(["DeviceAllow=/dev/net/tun rw"] if spec.wireguard else []),
        "LimitNOFILE=65536",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def systemd_running() -> bool:
    return SYSTEMD_RUNTIME.is_dir() and shutil.which("systemctl") is not None


def install_unit(spec: UnitSpec, dry_run: bool, start: bool) -> None:
    """Write the unit and enable it (and start it with start=True); print it with dry_run.

    Without a running systemd nothing is written. When systemctl fails, the unit file
    written here is removed again, so a failed install leaves nothing behind.
    """
    unit = render_unit(spec)
    if dry_run:
        click.echo(unit, nl=False)
        return
    if not systemd_running() or not UNIT_DIR.is_dir():
        raise ConfigError("systemd is not running on this machine; nothing was installed "
                          "(see README: running without systemd; --dry-run prints the unit)")
    path = UNIT_DIR / spec.name
    existed = path.exists()
    previous = path.read_text() if existed else None
    path.write_text(unit)
    path.chmod(0o644)
    enable = ["systemctl", "enable", *(["--now"] if start else []), spec.name]
    try:
        for argv in (["systemctl", "daemon-reload"], enable):
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise ConfigError(f"{' '.join(argv)} failed: {result.stderr.strip()[:200]}")
    except BaseException:
        if previous is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            path.write_text(previous)
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True, check=False)
        raise
    service = spec.name.removesuffix(".service")
    if start:
        click.echo(f"installed {path}; enabled and started (systemctl status {service})")
    else:
        click.echo(f"installed {path} and enabled it (starts at boot); start it now with: "
                   f"systemctl start {service}")
