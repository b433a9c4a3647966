"""Network namespaces, bridge, veths and process records behind `nimbus lab`; crash-safe teardown.

Underlay plan for lab <id>: subnet 172.31.<k>.0/24 with k = sha256(id) mod 256 (labs are
isolated from each other, so k only makes addresses easy to tell apart); the bridge
namespace `nlab-<id>-br` holds bridge `br0` and has no address; the control plane
(`nlab-<id>-cp`) is .2 and node n (`nlab-<id>-<n>`) is .(10+n), n = 1..240. Each member's
eth0 is one end of a veth whose other end (`vcp`, `v<n>`) sits on br0. Nothing is created
in the host's own namespace.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from nimbus.sysrun import Runner

log = logging.getLogger("nimbus.lab.netns")

STATE_ROOT = Path("/run/nimbus-lab")
WG_SOCK_DIR = Path("/var/run/wireguard")
NS_PREFIX = "nlab-"
MAX_NODES = 240
_ID_RE = re.compile(r"^[a-z0-9]{1,8}$")
_MEMBER_RE = re.compile(r"^(cp|[1-9][0-9]{0,2})$")


def check_lab_id(lab_id: str) -> str:
    """ValueError unless lab_id is 1-8 chars of [a-z0-9] (keeps interface names <= 15)."""
    if not isinstance(lab_id, str) or not _ID_RE.match(lab_id):
        raise ValueError(f"lab id {lab_id!r} must be 1-8 characters of [a-z0-9]")
    return lab_id


def new_lab_id() -> str:
    """A random 4-character lab id."""
    return "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(4))


def _member(m: str | int) -> str:
    s = str(m)
    if not _MEMBER_RE.match(s) or (s != "cp" and int(s) > MAX_NODES):
        raise ValueError(f"lab member {m!r} must be 'cp' or 1..{MAX_NODES}")
    return s


def netns_name(lab_id: str, member: str | int) -> str:
    """Namespace of a member ('cp' or node number) or of the bridge ('br')."""
    return f"{NS_PREFIX}{check_lab_id(lab_id)}-{'br' if member == 'br' else _member(member)}"


def wg_ifname(lab_id: str, member: str | int) -> str:
    """WireGuard interface name: nl<id>cp for the control plane, nl<id>n<n> for node n."""
    m = _member(member)
    return f"nl{check_lab_id(lab_id)}{'cp' if m == 'cp' else 'n' + m}"


def subnet_octet(lab_id: str) -> int:
    """k in the lab's underlay 172.31.<k>.0/24."""
    return hashlib.sha256(check_lab_id(lab_id).encode()).digest()[0]


def underlay_ip(lab_id: str, member: str | int) -> str:
    """Underlay address (no prefix length) of a member's eth0."""
    m = _member(member)
    host = 2 if m == "cp" else 10 + int(m)
    return f"172.31.{subnet_octet(lab_id)}.{host}"


def _state_dir(lab_id: str, root: Path) -> Path:
    return root / check_lab_id(lab_id)


def _load_state(lab_id: str, root: Path) -> dict[str, Any]:
    try:
        data = json.loads((_state_dir(lab_id, root) / "state.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_state(lab_id: str, root: Path, state: dict[str, Any]) -> None:
    """Atomic, 0600: a crash leaves the old or the new state file."""
    d = _state_dir(lab_id, root)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = d / "state.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, d / "state.json")


def _proc_identity(pid: int) -> tuple[str, str] | None:
    """(cmdline, start time) of a live process, to tell it from a later reuse of its PID.

    The command line reads empty while the process is inside execve (`ip netns exec`
    replacing itself): that is still the same, live process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return cmdline.decode(errors="replace"), fields[19]


class LabNet:
    """The namespaces and links of one lab; every creation is recorded before it happens."""

    def __init__(self, lab_id: str, runner: Runner, *, state_root: Path = STATE_ROOT) -> None:
        self.lab_id = check_lab_id(lab_id)
        self.runner = runner
        self.state_root = state_root
        self.bridge_ns = netns_name(lab_id, "br")
        self.subnet = f"172.31.{subnet_octet(lab_id)}.0/24"
        self.state = _load_state(lab_id, state_root) or {
            "lab_id": lab_id,
            "subnet": self.subnet,
            "created_at": time.time(),
            "namespaces": [],
            "members": [],
            "interfaces": [],
            "processes": [],
        }
        for k in ("namespaces", "members", "interfaces", "processes"):
            self.state.setdefault(k, [])

    def _save(self) -> None:
        _save_state(self.lab_id, self.state_root, self.state)

    def _add_ns(self, ns: str) -> None:
        if ns not in self.state["namespaces"]:
            self.state["namespaces"].append(ns)
            self._save()
        if ns not in list_namespaces(self.runner):
            self.runner.run(["ip", "netns", "add", ns])
        self.runner.run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def create(self, nodes: int) -> None:
        """Bridge namespace, control plane and nodes 1..nodes."""
        if not 0 <= nodes <= MAX_NODES:
            raise ValueError(f"nodes must be 0..{MAX_NODES}")
        self._add_ns(self.bridge_ns)
        if not self._has_link(self.bridge_ns, "br0"):
            self.runner.run(["ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge"])
        self.runner.run(["ip", "-n", self.bridge_ns, "link", "set", "br0", "up"])
        for m in ["cp", *range(1, nodes + 1)]:
            self.add_member(m)

    def _has_link(self, ns: str, name: str) -> bool:
        return self.runner.run(["ip", "-n", ns, "link", "show", name], check=False).returncode == 0

    def add_member(self, member: str | int) -> str:
        """Create a member namespace with eth0 on the bridge; returns its namespace."""
        m = _member(member)
        ns, veth = self.netns(m), f"v{m}"
        self._add_ns(ns)
        if not self._has_link(self.bridge_ns, veth):
            peer = ["peer", "name", "eth0", "netns", ns]
            self.runner.run(
                ["ip", "-n", self.bridge_ns, "link", "add", veth, "type", "veth", *peer]
            )
        self.runner.run(["ip", "-n", self.bridge_ns, "link", "set", veth, "master", "br0", "up"])
        cidr = f"{self.underlay_ip(m)}/24"
        self.runner.run(["ip", "-n", ns, "address", "replace", cidr, "dev", "eth0"])
        self.runner.run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        if m not in self.state["members"]:
            self.state["members"].append(m)
            self._save()
        return ns

    def members(self) -> list[str]:
        """Members created so far ('cp', '1', '2', ...)."""
        return list(self.state["members"])

    def netns(self, member: str | int) -> str:
        return netns_name(self.lab_id, member)

    def underlay_ip(self, member: str | int) -> str:
        return underlay_ip(self.lab_id, member)

    def wg_ifname(self, member: str | int) -> str:
        """The member's WireGuard interface name, recorded so destroy() removes its socket."""
        name = wg_ifname(self.lab_id, member)
        if name not in self.state["interfaces"]:
            self.state["interfaces"].append(name)
            self._save()
        return name

    def record_process(self, name: str, pid: int, argv: Sequence[str]) -> None:
        """Remember a process started for this lab (from argv) so destroy() can stop it.

        The command line is the argv it was started with, not a read of /proc, which may
        catch the process mid-exec; the start time comes from /proc/PID/stat.
        """
        ident = _proc_identity(pid)
        if ident is None:
            raise ValueError(f"process {pid} ({name}) is not running")
        cmdline = " ".join(argv).strip()
        self.state["processes"].append(
            {"name": name, "pid": pid, "cmdline": cmdline, "start": ident[1]}
        )
        self._save()

    def run_in(self, member: str | int, argv: list[str], **kw: Any) -> Any:
        """Run a command to completion inside a member's namespace (Runner.run keywords)."""
        return self.runner.run(argv, netns=self.netns(member), **kw)

    def popen_in(
        self,
        member: str | int,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        stdout: IO[Any] | int | None = None,
        stderr: IO[Any] | int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process in a member's namespace and record it."""
        proc = popen_in(self.runner, self.netns(member), argv, env, stdout, stderr)
        with contextlib.suppress(ValueError):  # exited already: nothing to clean up later
            self.record_process(f"{member}:{os.path.basename(argv[0])}", proc.pid, proc.args)
        return proc

    def destroy(self) -> None:
        """Remove everything of this lab (see the module function)."""
        destroy(self.lab_id, self.runner, state_root=self.state_root)
        for k in ("namespaces", "members", "interfaces", "processes"):
            self.state[k] = []


def popen_in(
    runner: Runner,
    ns: str,
    argv: list[str],
    env: Mapping[str, str] | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv inside namespace ns (via `ip netns exec`, which execs in place: same PID)."""
    return runner.popen(argv, netns=ns, env=env, stdout=stdout, stderr=stderr)


def list_namespaces(runner: Runner) -> list[str]:
    """Names of all named network namespaces."""
    out = runner.run(["ip", "netns", "list"], check=False).stdout or ""
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def list_labs(runner: Runner | None = None, *, state_root: Path = STATE_ROOT) -> list[str]:
    """Ids of labs with a state dir or any leftover `nlab-<id>-` namespace."""
    ids: set[str] = set()
    if state_root.is_dir():
        ids |= {p.name for p in state_root.iterdir() if _ID_RE.match(p.name)}
    for ns in list_namespaces(runner or Runner()):
        m = re.match(r"^nlab-([a-z0-9]{1,8})-(br|cp|[0-9]+)$", ns)
        if m:
            ids.add(m.group(1))
    return sorted(ids)


def _same_process(rec: Mapping[str, Any]) -> bool:
    """True when the recorded PID still names the recorded, live process.

    The start time rules out PID reuse. The command line may have lost an
    `ip netns exec NS` prefix since it was recorded (that exec keeps the PID), so the
    current one must equal the recorded one or be its tail; it reads empty while the
    process is inside that exec, which is not a sign that it is gone.
    """
    ident = _proc_identity(int(rec.get("pid", 0)))
    if ident is None or ident[1] != rec.get("start"):
        return False
    recorded = str(rec.get("cmdline", ""))
    return ident[0] in ("", recorded) or recorded.endswith(" " + ident[0])


def terminate(pids: list[int], alive: Callable[[int], bool], grace: float = 5) -> None:
    """SIGTERM the processes, SIGKILL those still `alive` after `grace` seconds, and wait
    (up to 5 s) until they are gone."""
    for pid in pids:
        log.debug("[#] kill -TERM %d", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = [p for p in pids if alive(p)]
    for pid in pids:
        log.debug("[#] kill -KILL %d", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _stop_processes(records: list[dict[str, Any]]) -> None:
    """Stop the recorded processes that are still the same process (terminate())."""
    live = {int(r["pid"]): r for r in records
            if int(r.get("pid", 0)) > 1 and _same_process(r)}
    terminate(list(live), lambda pid: _same_process(live[pid]))


def _lab_ifname_re(lab_id: str) -> re.Pattern[str]:
    return re.compile(rf"^nl{re.escape(lab_id)}(cp|n[0-9]+)$")


def destroy(lab_id: str, runner: Runner | None = None, *, state_root: Path = STATE_ROOT) -> None:
    """Remove everything of a lab, also after a crash: processes, WireGuard links, namespaces."""
    runner = runner or Runner()
    check_lab_id(lab_id)
    state = _load_state(lab_id, state_root)
    _stop_processes(state.get("processes", []))
    prefix = f"{NS_PREFIX}{lab_id}-"
    namespaces = [ns for ns in list_namespaces(runner) if ns.startswith(prefix)]
    wg_re = _lab_ifname_re(lab_id)
    ifnames = {n for n in state.get("interfaces", []) if wg_re.match(n)}
    # WireGuard links first: deleting a namespace under a running wireguard-go would
    # leave the daemon (and with it the namespace) alive.
    for ns in namespaces:
        for link, kind in _links(runner, ns):
            if wg_re.match(link) or kind in ("wireguard", "tun"):
                ifnames.add(link)
                runner.run(["ip", "-n", ns, "link", "del", link], check=False)
    _sweep_orphans(runner, wg_re)
    for ns in namespaces:
        runner.run(["ip", "netns", "del", ns], check=False)
    if WG_SOCK_DIR.is_dir():
        ifnames |= {p.stem for p in WG_SOCK_DIR.glob(f"nl{lab_id}*.sock") if wg_re.match(p.stem)}
    _remove_sockets(ifnames)
    d = _state_dir(lab_id, state_root)
    for f in (d / "state.json", d / "state.json.tmp"):
        f.unlink(missing_ok=True)
    try:
        d.rmdir()
    except OSError as exc:
        if d.exists():
            log.warning("lab %s: could not remove %s: %s", lab_id, d, exc)


def _links(runner: Runner, ns: str) -> list[tuple[str, str | None]]:
    """(name, kind) of every link in ns; kind is 'tun', 'wireguard', 'veth', ... or None."""
    proc = runner.run(["ip", "-n", ns, "-d", "-j", "link", "show"], check=False)
    try:
        return [
            (link["ifname"], (link.get("linkinfo") or {}).get("info_kind"))
            for link in json.loads(proc.stdout or "[]")
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def _sweep_orphans(runner: Runner, wg_re: re.Pattern[str]) -> None:
    """Delete this lab's wireguard-go interfaces whose namespace lost its name (crash).

    Finds `wireguard-go <lab ifname>` processes and deletes their interface from inside
    their own namespace, which makes them exit; the host's namespace is never touched.
    """
    own_ns = os.readlink("/proc/self/ns/net")
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc_dir / "cmdline").read_bytes().split(b"\0")
            pid_ns = os.readlink(proc_dir / "ns" / "net")
        except OSError:
            continue
        if len(argv) < 2 or os.path.basename(argv[0]) != b"wireguard-go" or pid_ns == own_ns:
            continue
        ifname = argv[-2].decode(errors="replace") if argv[-1] == b"" else ""
        if wg_re.match(ifname):
            runner.run(
                ["nsenter", "-t", proc_dir.name, "-n", "ip", "link", "del", ifname], check=False
            )


def _remove_sockets(ifnames: set[str]) -> None:
    """wireguard-go removes its socket on exit; give it a moment, then remove leftovers."""
    socks = [WG_SOCK_DIR / f"{n}.sock" for n in sorted(ifnames)]
    deadline = time.monotonic() + 3
    while any(s.exists() for s in socks) and time.monotonic() < deadline:
        time.sleep(0.1)
    for s in socks:
        if s.exists():
            log.debug("[#] rm %s", s)
            s.unlink(missing_ok=True)
