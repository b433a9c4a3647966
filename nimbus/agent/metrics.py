"""Node facts for heartbeats: CPU, memory, disk, hostname, arch and the outbound IP (/proc)."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nimbus import wire

# The API accepts hostname/arch only in the shapes of nimbus.wire (hostname, arch).


def parse_cpu_times(stat_text: str) -> tuple[int, int]:
    """(busy, total) jiffies from the aggregate `cpu` line of /proc/stat."""
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(v) for v in fields[1:]]
            # user nice system idle iowait irq softirq steal [guest guest_nice]; guest time
            # is already counted in user/nice, so it is left out of the total.
            values = values[:8]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            total = sum(values)
            return total - idle, total
    raise ValueError("/proc/stat has no aggregate cpu line")


def parse_meminfo(text: str) -> dict[str, int]:
    """{"total", "used"} in bytes; used = MemTotal - MemAvailable."""
    kb: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            kb[name.strip()] = int(parts[0])
    total = kb.get("MemTotal", 0)
    available = kb.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = kb.get("MemFree", 0) + kb.get("Buffers", 0) + kb.get("Cached", 0)
    return {"total": total * 1024, "used": max(0, total - available) * 1024}


def disk_usage(path: str = "/") -> dict[str, int]:
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    return {"total": total, "used": max(0, (st.f_blocks - st.f_bfree) * st.f_frsize)}


class CpuSampler:
    """CPU usage 0-1 between two calls (since boot on the first call)."""

    def __init__(self, read: Callable[[], str] | None = None) -> None:
        self._read = read or (lambda: Path("/proc/stat").read_text())
        self._last: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def usage(self) -> float:
        busy, total = parse_cpu_times(self._read())
        with self._lock:
            last, self._last = self._last, (busy, total)
        if last is not None and total > last[1]:
            busy, total = busy - last[0], total - last[1]
        if total <= 0:
            return 0.0
        return round(min(1.0, max(0.0, busy / total)), 4)


def detect_ip(host: str, port: int) -> str | None:
    """The local address the kernel would use to reach host (UDP connect: no packet sent)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    for family, kind, proto, _name, addr in infos:
        try:
            with socket.socket(family, kind, proto) as s:
                s.connect(addr)
                return str(s.getsockname()[0]).split("%")[0]
        except OSError:
            continue
    return None


def endpoint_ip(host: str, port: int) -> str | None:
    """detect_ip(), if peers could use it as this node's endpoint (wire.endpoint_problem):
    towards a control plane on loopback (--no-wireguard) there is none to report."""
    ip = detect_ip(host, port)
    return ip if ip and wire.endpoint_problem(ip) is None else None


def hostname() -> str | None:
    """This host's name, or None when it is not an RFC 1123 name (the server refuses those)."""
    name = socket.gethostname().strip()
    return name if wire.is_hostname(name) else None


def arch() -> str | None:
    name = platform.machine().strip()
    return name if wire.ARCH_RE.fullmatch(name) else None


def collect(cpu: CpuSampler, ip_target: tuple[str, int] | None,
            agent_version: str) -> dict[str, Any]:
    """A heartbeat body (`wire.HEARTBEAT`); a reader that fails just leaves its field out."""
    body: dict[str, Any] = {"agent_version": agent_version}
    with contextlib.suppress(OSError, ValueError):
        body["cpu"] = {"count": os.cpu_count() or 1, "usage": cpu.usage()}
    with contextlib.suppress(OSError):
        body["memory"] = parse_meminfo(Path("/proc/meminfo").read_text())
    with contextlib.suppress(OSError):
        body["disk"] = disk_usage("/")
    for key, value in (("hostname", hostname()), ("arch", arch())):
        if value:
            body[key] = value
    if ip_target is not None:
        ip = endpoint_ip(*ip_target)
        if ip:
            body["ip_address"] = ip
    return wire.build(wire.HEARTBEAT, **body)
