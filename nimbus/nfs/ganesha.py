"""NFS-Ganesha as data: its config file (every value validated first), command line, paths.

Ganesha 4.3 has no config-check mode and a SIGHUP with any error in an EXPORT block drops
that export (open sessions get NFS4ERR_STALE), so `render` refuses anything it cannot vouch
for instead of writing it. The server listens on one address (the node's overlay IP),
TCP 2049, NFSv4 only, without NLM/RQUOTA/UDP; every file it keeps is under `Paths.root`
(docs/workloads.md "Volumes" has the measurements behind each setting).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from nimbus.nfs import volumes

NFS_PORT = 2049
ANON_ID = 65534  # what a squashed root (and an unmapped user) writes as: nobody/nogroup
MAX_EXPORT_ID = 65535  # 0 is the pseudo root
_VERSION_RE = re.compile(r"Release\s*=\s*V?([0-9][0-9A-Za-z.+~-]*)")


@dataclass(frozen=True)
class Export:
    """One export: a folder on this node, its NFSv4 path `/NAME`, who may mount it."""

    export_id: int
    name: str
    folder: str
    clients: tuple[str, ...] = ()
    root_squash: bool = True

    def checked(self) -> Export:
        if not isinstance(self.export_id, int) or not 0 < self.export_id <= MAX_EXPORT_ID:
            raise ValueError(f"export {self.name!r}: id {self.export_id!r} is not 1-65535")
        volumes.check_name(self.name)
        volumes.check_folder(self.folder)
        clients = tuple(sorted({volumes.check_ip(c) for c in self.clients},
                               key=_ip_sort_key))
        return Export(self.export_id, self.name, self.folder, clients, bool(self.root_squash))

    @property
    def pseudo(self) -> str:
        return volumes.export_path(self.name)


def _ip_sort_key(ip: str) -> tuple[int, ...]:
    return tuple(int(p) for p in ip.split(".")) if "." in ip else (999, hash(ip))


@dataclass(frozen=True)
class Paths:
    """Everything ganesha writes: config, pid, recovery state, Kerberos cache dir, blkid."""

    root: str  # <agent data dir>/nfs

    @property
    def conf(self) -> str:
        return posixpath.join(self.root, "ganesha.conf")

    @property
    def pid(self) -> str:
        return posixpath.join(self.root, "ganesha.pid")

    @property
    def recovery(self) -> str:
        return posixpath.join(self.root, "recovery")

    @property
    def krb5(self) -> str:
        return posixpath.join(self.root, "krb5")

    @property
    def blkid(self) -> str:
        return posixpath.join(self.root, "blkid.tab")

    def checked(self) -> Paths:
        volumes.check_folder(self.root)  # goes into the config in quotes, like a folder
        return self


def check_exports(exports: Iterable[Export]) -> list[Export]:
    """Each export valid, and no two with one id, one name, or overlapping folders."""
    out: list[Export] = []
    for export in sorted(exports, key=lambda e: e.export_id):
        export = export.checked()
        for other in out:
            if other.export_id == export.export_id:
                raise ValueError(f"exports {other.name} and {export.name} share id "
                                 f"{export.export_id}")
            if other.name == export.name:
                raise ValueError(f"export {export.name} is listed twice")
            if volumes.overlaps(other.folder, export.folder):
                raise ValueError(f"the folders of {other.name} ({other.folder}) and "
                                 f"{export.name} ({export.folder}) overlap")
        out.append(export)
    return out


def _export_block(e: Export) -> str:
    squash = "root_squash" if e.root_squash else "no_root_squash"
    lines = [
        "EXPORT {",
        f"    Export_Id = {e.export_id};",
        f'    Path = "{e.folder}";',
        f'    Pseudo = "{e.pseudo}";',
        "    Protocols = 4;",
        "    Transports = TCP;",
        "    Access_Type = None;  # nobody but the CLIENT list below",
        f"    Squash = {squash};",
        f"    Anonymous_Uid = {ANON_ID};",
        f"    Anonymous_Gid = {ANON_ID};",
        "    SecType = sys;",
        "    FSAL { Name = VFS; }",
    ]
    if e.clients:  # without a CLIENT block the export is hidden from everyone
        lines += [
            "    CLIENT {",
            f"        Clients = {', '.join(e.clients)};",
            "        Protocols = 4;",
            "        Access_Type = RW;",
            f"        Squash = {squash};",
            f"        Anonymous_Uid = {ANON_ID};",
            f"        Anonymous_Gid = {ANON_ID};",
            "    }",
        ]
    return "\n".join([*lines, "}", ""])


def render(bind_ip: str, exports: Iterable[Export], paths: Paths) -> str:
    """The whole ganesha.conf; ValueError (naming the value) before anything is rendered."""
    ip = volumes.check_ip(bind_ip)
    paths = paths.checked()
    checked = check_exports(exports)
    head = f"""# Written by the nimbus agent; changes here are overwritten.
NFS_CORE_PARAM {{
    Protocols = 4;
    Bind_addr = {ip};
    NFS_Port = {NFS_PORT};
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}}
NFSv4 {{
    RecoveryBackend = fs;
    RecoveryRoot = "{paths.recovery}";
    Graceless = true;  # serve at once after a restart (the recovery dir is wiped then)
    Only_Numeric_Owners = true;  # uids as numbers: no idmapd domain to agree on
}}
NFS_KRB5 {{
    Active_krb5 = false;
    CCacheDir = "{paths.krb5}";
}}
LOG {{
    Default_Log_Level = EVENT;
}}
"""
    return head + "".join(_export_block(e) for e in checked)


def argv(paths: Paths, binary: str) -> list[str]:
    """Ganesha in the foreground, logging to stderr (the supervisor's log file).

    A small sh wraps it to wipe the recovery dir before each start: under Graceless,
    client records left at shutdown only pile up. The paths are positional parameters,
    never spliced into the script.
    """
    script = ('rm -rf -- "$1" && mkdir -m 0700 -- "$1" && '
              'exec "$2" -F -f "$3" -L STDERR -p "$4" -N NIV_EVENT')
    return ["/bin/sh", "-c", script, "ganesha", paths.recovery, binary, paths.conf, paths.pid]


def env(paths: Paths) -> dict[str, str]:
    """Its blkid cache in our dir (else it rewrites /run/blkid/blkid.tab)."""
    return {"BLKID_FILE": paths.blkid}


def parse_version(text: str) -> str | None:
    """The version out of `ganesha.nfsd -v` ("NFS-Ganesha Release = V4.3" → "4.3")."""
    match = _VERSION_RE.search(text or "")
    return match.group(1) if match else None
