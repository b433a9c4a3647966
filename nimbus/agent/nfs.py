"""This node's NFS-Ganesha: export folders, its config file, and the supervised process.

The plan (`nimbus.nfs.ganesha`) is pure; this module checks folders on the real file
system, writes the config, and asks the supervisor to run, reload (SIGHUP) or stop it.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from nimbus.nfs import ganesha, volumes
from nimbus.store.files import ensure_private_dir, write_private
from nimbus.sysrun import which

log = logging.getLogger("nimbus.agent.nfs")
PROCESS = "ganesha"
BINARY = "ganesha.nfsd"
FSAL_GLOBS = ("/usr/lib/*/ganesha/libfsalvfs.so*", "/usr/lib/ganesha/libfsalvfs.so*",
              "/usr/lib64/ganesha/libfsalvfs.so*", "/usr/local/lib*/ganesha/libfsalvfs.so*")
READY_TIMEOUT = 10.0
INSTALL_HINT = "install nfs-ganesha and nfs-ganesha-vfs (Debian: apt install nfs-ganesha " \
               "nfs-ganesha-vfs)"


class NfsError(Exception):
    """A folder or the server could not be set up; the message is one line for the operator."""


def probe(config: Any = None) -> str | None:
    """Ganesha's version when it and its VFS back-end are installed, else None."""
    binary = which(BINARY)
    if binary is None or not any(glob.glob(g) for g in FSAL_GLOBS):
        return None
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10,
                             check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return ganesha.parse_version(out.stdout + out.stderr) or "unknown"


def paths(data_dir: Path) -> ganesha.Paths:
    return ganesha.Paths(str(Path(data_dir) / "nfs"))


def resolve_folder(data_dir: Path, name: str, folder: str | None) -> str:
    """The folder to export (the default under the data dir when none is given), checked
    against the system directories and the agent's own files, symlinks resolved."""
    try:
        path = volumes.check_folder(folder) if folder else volumes.default_folder(
            str(data_dir), name)
        real = os.path.realpath(path)
        volumes.check_local_folder(path, real, str(Path(data_dir).resolve()))
    except ValueError as exc:
        raise NfsError(str(exc)) from None
    if os.path.lexists(path) and not os.path.isdir(path):
        raise NfsError(f"{path} exists and is not a directory")
    return path


def prepare_folder(path: str, root_squash: bool) -> None:
    """Create a missing folder; a new one belongs to whom a client's root writes as."""
    if os.path.isdir(path):
        return
    try:
        os.makedirs(path, mode=0o755)
        if root_squash:  # a squashed root is nobody: give it the folder we made
            os.chown(path, ganesha.ANON_ID, ganesha.ANON_ID)
    except OSError as exc:
        raise NfsError(f"cannot create {path}: {exc.strerror or exc}") from None


def plan_exports(data_dir: Path, wanted: list[dict[str, Any]]
                 ) -> tuple[list[ganesha.Export], dict[str, str]]:
    """The exports that can be served, and a one-line error for each that cannot."""
    ok: list[ganesha.Export] = []
    errors: dict[str, str] = {}
    for item in wanted:
        name = str(item.get("name", ""))
        try:
            folder = resolve_folder(data_dir, name, item.get("folder"))
            export = ganesha.Export(int(item.get("export_id", 0)), name, folder,
                                    tuple(item.get("clients") or ()),
                                    bool(item.get("root_squash", True))).checked()
            ganesha.check_exports([*ok, export])  # no clash with those already taken
            prepare_folder(folder, export.root_squash)
        except (NfsError, ValueError, TypeError) as exc:
            errors[name or "?"] = str(exc)
            continue
        ok.append(export)
    return ok, errors


def serve(supervisor: Any, data_dir: Path, bind_ip: str, exports: list[ganesha.Export]
          ) -> str:
    """Make ganesha serve exactly `exports` on bind_ip (stopped when there are none).

    Returns "running" or "stopped". The config is rendered (and so validated) in full
    before it replaces the old one; a running server rereads it on SIGHUP.
    """
    if not exports:
        supervisor.stop(PROCESS)
        return "stopped"
    binary = which(BINARY)
    if binary is None:
        raise NfsError(f"{BINARY} is not installed on this node: {INSTALL_HINT}")
    p = paths(data_dir)
    text = ganesha.render(bind_ip, exports, p)
    ensure_private_dir(Path(p.root))
    ensure_private_dir(Path(p.krb5))
    conf = Path(p.conf)
    changed = not conf.exists() or conf.read_text() != text
    if changed:
        write_private(conf, text)
    was = supervisor.status().get(PROCESS, {}).get("state")
    supervisor.ensure(PROCESS, ganesha.argv(p, binary), env=ganesha.env(p),
                      cwd=Path(p.root), stop_timeout=10.0)
    if changed and was == "running":
        supervisor.signal(PROCESS, signal.SIGHUP)
        log.info("ganesha: exports changed, sent SIGHUP (%d export(s))", len(exports))
    wait_listening(supervisor, bind_ip, READY_TIMEOUT)
    return "running"


def wait_listening(supervisor: Any, ip: str, timeout: float) -> None:
    """Until ganesha accepts TCP on ip:2049; NfsError with its last log line otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(
                (ip, ganesha.NFS_PORT), timeout=0.5):
            return
        state = supervisor.status().get(PROCESS, {})
        if state.get("state") != "running" or time.monotonic() > deadline:
            raise NfsError(f"ganesha is not listening on {ip}:{ganesha.NFS_PORT} "
                           f"({state.get('state', 'absent')}, last exit "
                           f"{state.get('last_exit')}): {_last_line(state.get('log'))}")
        time.sleep(0.05)


def _last_line(log_path: str | None) -> str:
    """The last serious line of ganesha's log, for the one-line error."""
    if not log_path:
        return "no log"
    try:
        with open(log_path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(log_path) - 8192))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return "no log"
    serious = [ln for ln in lines if any(k in ln for k in (":FATAL", ":MAJ", ":CRIT"))
               and "DBUS" not in ln and "Cannot register" not in ln]
    return ((serious or lines or ["no output"])[-1]).strip()[-300:]
