"""Compose files for `docker stack deploy`: validation and the overlay MTU rewrite (pure).

A compose file reaches the control plane as a JSON object (the CLI parses YAML; see
docs/decisions.md). Before it is sent to the swarm manager every overlay network of the
stack, including the `default` network services get when they name none, is given
MTU 1370 (VXLAN inside WireGuard) unless the file sets its own.
"""

from __future__ import annotations

import copy
import json
import posixpath
from typing import Any

from nimbus.docker.plan import MTU_OPT, OVERLAY_MTU

# `docker stack deploy` (Docker 20.10) needs a 3.x version key; newer CLIs ignore it.
DEFAULT_VERSION = "3.8"
MAX_COMPOSE_BYTES = 256 * 1024


def validate(compose: Any) -> dict[str, Any]:
    """ValueError (one readable sentence) unless this looks like a deployable stack file."""
    if not isinstance(compose, dict):
        raise ValueError("the compose file must be a mapping with a 'services' section")
    services = compose.get("services")
    if not isinstance(services, dict) or not services:
        raise ValueError("the compose file has no services")
    for name, svc in services.items():
        if not isinstance(svc, dict):
            raise ValueError(f"service {name!r} must be a mapping")
        if not svc.get("image"):
            raise ValueError(f"service {name!r} has no image (stacks cannot build images)")
    networks = compose.get("networks", {})
    if networks is not None and not isinstance(networks, dict):
        raise ValueError("'networks' must be a mapping")
    version = compose.get("version")
    if version is not None and not str(version).startswith("3"):
        raise ValueError(f"compose version {version!r} is not supported by `docker stack "
                         "deploy`: use 3.x (or leave 'version' out)")
    if len(json.dumps(compose)) > MAX_COMPOSE_BYTES:
        raise ValueError(f"the compose file is larger than {MAX_COMPOSE_BYTES // 1024} KiB")
    return compose


def _uses_default_network(services: dict[str, Any]) -> bool:
    for svc in services.values():
        nets = svc.get("networks")
        if not nets or "default" in nets:
            return True
    return False


def _needs_mtu(net: Any) -> bool:
    """An overlay network the file does not size itself (external ones are not ours)."""
    if not isinstance(net, dict):
        return True  # `name:` with no settings: a default (overlay) network
    if net.get("external"):
        return False
    if net.get("driver", "overlay") != "overlay":
        return False
    opts = net.get("driver_opts") or {}
    return MTU_OPT not in opts


def with_overlay_mtu(compose: dict[str, Any], mtu: int = OVERLAY_MTU) -> dict[str, Any]:
    """A copy of the compose dict in which every overlay network has driver_opts MTU."""
    out = copy.deepcopy(validate(compose))
    out.setdefault("version", DEFAULT_VERSION)
    out["version"] = str(out["version"])
    networks = out.get("networks") or {}
    if _uses_default_network(out["services"]) and "default" not in networks:
        networks["default"] = {}
    for name, net in list(networks.items()):
        if _needs_mtu(net):
            net = dict(net or {})
            net["driver_opts"] = {**(net.get("driver_opts") or {}), MTU_OPT: str(mtu)}
            networks[name] = net
    if networks:
        out["networks"] = networks
    return out


# SECURITY: what a compose file may ask for that hands its containers the node itself
# (docs/workloads.md, "Privileged stacks"). `host_privileges` only reports; the control plane
# refuses a deploy with findings unless an admin passed allow_privileged.
DANGEROUS_CAPS = frozenset({
    "ALL", "SYS_ADMIN", "SYS_MODULE", "SYS_RAWIO", "SYS_PTRACE", "SYS_BOOT", "SYS_TIME",
    "NET_ADMIN", "DAC_READ_SEARCH", "BPF", "PERFMON", "MAC_ADMIN", "MAC_OVERRIDE",
    "LINUX_IMMUTABLE", "SYSLOG", "SYS_RESOURCE", "SETFCAP"})
HOST_NAMESPACES = {"network_mode": "network", "pid": "PID", "ipc": "IPC", "uts": "UTS",
                   "userns_mode": "user", "cgroup": "cgroup"}
# Host paths that give a container the node: these, anything below them, and anything
# above them (binding /var hands over /var/run/docker.sock).
SENSITIVE_PATHS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/run", "/var/run",
                   "/var/lib/docker", "/var/lib/nimbus", "/var/lib/containerd", "/usr",
                   "/bin", "/sbin", "/lib", "/lib64", "/home")
_UNCONFINED = ("unconfined", "disable")


def _items(value: Any) -> list[Any]:
    """A compose list field as a list (a lone string is one item, not its characters)."""
    if value is None or value is False:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _sensitive(source: str) -> bool:
    """True for a bind source that reaches a sensitive host path (or cannot be judged)."""
    if source.startswith("~") or not source.startswith("/"):
        # Relative to a temporary directory on the manager: harmless unless it climbs out.
        return source.startswith("~") or posixpath.normpath(source).startswith("..")
    path = posixpath.normpath("/" + source.lstrip("/"))
    return path == "/" or any(path == p or path.startswith(p + "/") or p.startswith(path + "/")
                              for p in SENSITIVE_PATHS)


def _bind_sources(svc: dict[str, Any]) -> list[str]:
    """Host paths of a service's bind mounts (short `SRC:DST[:mode]` and long syntax)."""
    out = []
    for vol in _items(svc.get("volumes")):
        if isinstance(vol, str):
            src, sep, _rest = vol.partition(":")
            if sep and (src.startswith(("/", ".", "~"))):
                out.append(src)
        elif isinstance(vol, dict) and vol.get("type") == "bind":
            out.append(str(vol.get("source") or ""))
    return out


_CHECKED_KEYS = ("privileged", "cap_add", "devices", "security_opt", "volumes", "env_file",
                 *HOST_NAMESPACES)


def _interpolated(value: Any) -> bool:
    """True when `docker stack deploy` would fill in a ${VAR} here ($$ is a literal $):
    the value the manager ends up with cannot be checked now."""
    return "$" in json.dumps(value).replace("$$", "")


def _service_findings(name: str, svc: dict[str, Any]) -> list[str]:
    who, out = f"service {name!r}", []
    variable = sorted(k for k in _CHECKED_KEYS if k in svc and _interpolated(svc[k]))
    if variable:
        out.append(f"{who} sets {', '.join(variable)} from variables, which the manager "
                   "fills in after this check")
    if svc.get("privileged") not in (None, False, "false"):
        out.append(f"{who} is privileged")
    caps = sorted({str(c).upper().removeprefix("CAP_") for c in _items(svc.get("cap_add"))}
                  & DANGEROUS_CAPS)
    if caps:
        out.append(f"{who} adds capabilities {', '.join(caps)}")
    if svc.get("devices"):
        out.append(f"{who} maps host devices")
    for key, space in HOST_NAMESPACES.items():
        if str(svc.get(key) or "") == "host":
            out.append(f"{who} joins the host's {space} namespace ({key}: host)")
    for opt in _items(svc.get("security_opt")):
        if str(opt).replace("=", ":").split(":")[-1].strip() in _UNCONFINED:
            out.append(f"{who} turns off confinement (security_opt {str(opt)[:64]})")
    for src in _bind_sources(svc):
        if _sensitive(src):
            out.append(f"{who} mounts the host path {src[:128]}")
    for src in _items(svc.get("env_file")):
        src = src.get("path") if isinstance(src, dict) else src  # compose's long form
        if isinstance(src, str) and _sensitive(src):
            out.append(f"{who} reads the env_file {src[:128]} from the manager's disk")
    return out


def _top_level_findings(compose: dict[str, Any]) -> list[str]:
    out = [f"top-level {key} are set from variables, which the manager fills in after this "
           "check" for key in ("networks", "volumes", "secrets", "configs")
           if _interpolated(compose.get(key))]
    for name, net in (compose.get("networks") or {}).items():
        if isinstance(net, dict) and net.get("external") and \
                (net.get("name") or name) == "host":
            out.append(f"network {name!r} is the host's network")
    for name, vol in (compose.get("volumes") or {}).items():
        opts = (vol or {}).get("driver_opts") or {} if isinstance(vol, dict) else {}
        if "bind" in str(opts.get("o", "")) and _sensitive(str(opts.get("device", ""))):
            out.append(f"volume {name!r} binds the host path {str(opts['device'])[:128]}")
    for kind in ("secrets", "configs"):
        for name, item in (compose.get(kind) or {}).items():
            src = item.get("file") if isinstance(item, dict) else None
            if isinstance(src, str) and _sensitive(src):
                out.append(f"{kind[:-1]} {name!r} reads {src[:128]} from the manager's disk")
    return out


def host_privileges(compose: dict[str, Any]) -> list[str]:
    """What in a (validated) compose file reaches past the container into the node: one
    readable phrase per finding, [] for an ordinary stack."""
    out = []
    for name, svc in (compose.get("services") or {}).items():
        if isinstance(svc, dict):
            out += _service_findings(str(name)[:64], svc)
    return out + _top_level_findings(compose)
