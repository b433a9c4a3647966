"""Pure rules of an NFS volume: its name, its folder, its NFSv4 path, its Docker volume.

Used by the control plane (refuse bad input before anything changes) and by the agent
(check the folder again against its own data dir and the real file system). No I/O here.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from typing import Any

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\Z")
# Characters a folder may have: every value goes into ganesha.conf inside double quotes,
# so quotes, backslashes, braces, ';', '#' and control characters are kept out entirely.
FOLDER_RE = re.compile(r"/[A-Za-z0-9._+@=,/ -]*\Z")
DOCKER_PREFIX = "nimbus-"
LABEL = "io.nimbus.volume"  # on every Docker volume we create: we remove only those
NFS_VERSION = "4.1"
# Never exported, nor anything below them: the system's own files and pseudo file systems.
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
               "/proc", "/root", "/run", "/sbin", "/sys", "/usr", "/var/lib/docker",
               "/var/lib/nfs", "/var/run")


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError("a volume name must be 1-63 characters of a-z, 0-9 and '-', "
                         "starting with a letter or digit")
    return name


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_folder(folder: Any) -> str:
    """The folder as given when it is an acceptable absolute path; ValueError otherwise.

    Syntax and the fixed system directories only; the agent adds the checks that need its
    own file system (`check_local_folder`).
    """
    if not isinstance(folder, str) or not folder.startswith("/"):
        raise ValueError("the folder must be an absolute path (it is on the serving node)")
    if len(folder) > 1024 or not FOLDER_RE.match(folder):
        raise ValueError("the folder may only have letters, digits, spaces and . _ + @ = , - /")
    if folder.strip("/") == "":
        raise ValueError("the root directory cannot be exported")
    parts = folder.split("/")
    if ".." in parts or "." in parts or posixpath.normpath(folder) != folder.rstrip("/") \
            or "//" in folder:
        raise ValueError("the folder must be a plain absolute path (no '.', '..' or '//')")
    folder = folder.rstrip("/")
    for system in SYSTEM_DIRS:
        if _inside(folder, system):
            raise ValueError(f"{folder} is a system directory ({system}); choose a folder of "
                             "your own, e.g. /srv/NAME")
    return folder


def check_local_folder(folder: str, real: str, data_dir: str) -> str:
    """The agent's checks: `real` is the folder with symlinks resolved. The export may
    never hold the agent's own files: refuse the data dir, anything holding it, and its
    inside except its `volumes/` subtree (the default place of a volume)."""
    data_dir = posixpath.normpath(data_dir)
    volumes = posixpath.join(data_dir, "volumes")
    for path in (folder, real):
        if path != folder:
            check_folder(path)  # a symlink must not lead into a system directory
        if _inside(data_dir, path):
            raise ValueError(f"{folder} is or contains the agent's data dir {data_dir}")
        if _inside(path, data_dir) and not (_inside(path, volumes) and path != volumes):
            raise ValueError(f"{folder} is inside the agent's data dir {data_dir} (only "
                             f"{volumes}/NAME may be exported)")
    return folder


def default_folder(data_dir: str, name: str) -> str:
    return posixpath.join(posixpath.normpath(data_dir), "volumes", check_name(name))


def overlaps(a: str, b: str) -> bool:
    """True when one folder is, or is inside, the other (two exports of one tree)."""
    return _inside(a, b) or _inside(b, a)


def export_path(name: str) -> str:
    """The NFSv4 pseudo path clients mount: `/NAME`."""
    return "/" + check_name(name)


def docker_name(name: str) -> str:
    return DOCKER_PREFIX + check_name(name)


def check_ip(addr: Any) -> str:
    if not isinstance(addr, str):
        raise ValueError("an IP address must be a string")
    return str(ipaddress.ip_address(addr))


def docker_options(server_ip: str, export: str) -> dict[str, str]:
    """`docker volume create --driver local` options of an NFSv4.1 mount of the export.

    Hard mounts (the default, kept): a container blocks while the server is away instead of
    seeing I/O errors and half-written files, which is what shared data needs.
    """
    ip = check_ip(server_ip)
    return {"type": "nfs", "o": f"addr={ip},nfsvers={NFS_VERSION},rw,hard,noatime",
            "device": f":{export}"}


def docker_create_argv(name: str, server_ip: str, export: str) -> list[str]:
    """`docker` argv that creates the volume (labelled as ours)."""
    argv = ["volume", "create", "--driver", "local", "--label", f"{LABEL}={check_name(name)}"]
    for key, value in docker_options(server_ip, export).items():
        argv += ["--opt", f"{key}={value}"]
    return [*argv, docker_name(name)]


def nfs_url(server_ip: str, export: str, file: str = "") -> str:
    """A libnfs URL (nfs-ls, nfs-cp, nfs-cat) of the export or a file in it."""
    ip = check_ip(server_ip)
    host = f"[{ip}]" if ":" in ip else ip
    tail = "/" + file.lstrip("/") if file else ""
    return f"nfs://{host}{export}{tail}?version=4"


COMPOSE_VOLUME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")


def check_compose_volume(key: Any) -> str:
    if not isinstance(key, str) or not COMPOSE_VOLUME_RE.match(key):
        raise ValueError(f"{str(key)[:64]!r} is not a compose volume name")
    return key


def map_compose_volumes(compose: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """The compose file with each mapped volume declared as the external `nimbus-NAME`.

    Each mapped key must be a volume the compose file declares (top-level `volumes:`); its
    own settings are replaced, since the NFS volume is created by Nimbus, not by the stack.
    """
    declared = compose.get("volumes") or {}
    if mapping and not isinstance(declared, dict):
        raise ValueError("the compose file's top-level 'volumes' must be a mapping")
    out = {**compose, "volumes": dict(declared)} if mapping else dict(compose)
    for key, name in sorted(mapping.items()):
        check_compose_volume(key)
        if key not in declared:
            raise ValueError(f"the compose file declares no volume {key!r} (top-level "
                             "'volumes:'), so --volume cannot map it")
        out["volumes"][key] = {"external": True, "name": docker_name(name)}
    return out
