"""`nimbus lab`: a control plane and N agents with real WireGuard inside LabNet's namespaces.

Files of lab <id> live in /var/lib/nimbus-lab/<id>/ (0700), apart from a real install's
/var/lib/nimbus and /etc/nimbus:

    lab.json           what `lab up` made: command used, node ids, overlay addresses
    admin.json         the lab admin's connection config (0600), api_url on the cp underlay
    cp/api.toml cp/data/           the control plane's config and data dir
    n<N>/agent.toml n<N>/data/     each agent's config and data dir
    logs/cp.log logs/n<N>.log      output of the daemons

Daemons run in their own session (they outlive `lab up`) and are recorded in LabNet's state
file, so `lab down` (netns.destroy) stops them even after a crash of the command itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nimbus import wire
from nimbus.errors import Conflict, NimbusError, NotFound
from nimbus.lab import docker as labdocker
from nimbus.lab import netns, procs
from nimbus.lab.netns import STATE_ROOT, LabNet
from nimbus.lab.pings import Matrix, ping_matrix
from nimbus.lab.procs import child_env, self_command
from nimbus.sysrun import CommandError, Runner

log = logging.getLogger("nimbus.lab")

DATA_ROOT = Path("/var/lib/nimbus-lab")
API_PORT = 8443
WG_PORT = wire.WIREGUARD_PORT
OVERLAY = "10.106.103.0/24"
HEARTBEAT_SEC = 2

# Liveness probe run inside the cp namespace (the host cannot reach the lab's underlay).
# It only asks whether /healthz answers, so it does not verify the certificate.
_HEALTH_PROBE = """
import ssl, sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
            sys.exit(0 if r.status == 200 else 1)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
"""


class LabError(NimbusError):
    """The lab could not be built or driven; the message says what to look at."""


def check_requirements(*, euid: int | None = None,
                       which: Callable[[str], str | None] | None = None,
                       kernel_module: Path = Path("/sys/module/wireguard"),
                       tun: Path = Path("/dev/net/tun")) -> None:
    """LabError unless we are root and have ip, wg, ping and a WireGuard implementation."""
    from nimbus import sysrun

    which = which or sysrun.which
    if (os.geteuid() if euid is None else euid) != 0:
        raise LabError("nimbus lab needs root (network namespaces and WireGuard); "
                       "run it with sudo")
    for tool, pkg in (("ip", "iproute2"), ("wg", "wireguard-tools"), ("ping", "iputils-ping")):
        if which(tool) is None:
            raise LabError(f"nimbus lab needs `{tool}`: install {pkg}")
    if kernel_module.exists():
        return
    if which("wireguard-go") is None:
        raise LabError("no kernel WireGuard module and no wireguard-go: install wireguard-go "
                       "(userspace WireGuard) or load the module with `modprobe wireguard`")
    if not tun.exists():
        raise LabError("wireguard-go needs /dev/net/tun (modprobe tun, or pass the device "
                       "into the container)")


def all_labs(runner: Runner | None = None, *, state_root: Path = STATE_ROOT,
             data_root: Path = DATA_ROOT) -> list[str]:
    """Ids of every lab with namespaces, a state file or a data dir."""
    ids = set(netns.list_labs(runner, state_root=state_root))
    if data_root.is_dir():
        ids |= {p.name for p in data_root.iterdir() if p.is_dir() and _valid_id(p.name)}
    return sorted(ids)


def _valid_id(lab_id: str) -> bool:
    try:
        netns.check_lab_id(lab_id)
        return True
    except ValueError:
        return False


def created_at(lab_id: str, *, data_root: Path = DATA_ROOT) -> float:
    """When `lab up` made the lab (its lab.json), 0 when unknown."""
    try:
        data = json.loads((data_root / lab_id / "lab.json").read_text())
        return float(data.get("created_at", 0)) if isinstance(data, dict) else 0.0
    except (OSError, ValueError, TypeError):
        return 0.0


def resolve_id(lab_id: str | None, runner: Runner | None = None, *, newest: bool = False,
               **roots: Path) -> str:
    """The given id, else the only lab there is, else (newest=True) the newest one."""
    labs = all_labs(runner, **roots)
    if lab_id:
        if lab_id not in labs:
            raise NotFound(f"no lab {lab_id!r} (labs: {', '.join(labs) or 'none'})")
        return lab_id
    if not labs:
        raise NotFound("no lab is running; start one with `nimbus lab up --nodes 3`")
    if len(labs) > 1:
        if not newest:
            raise LabError(f"several labs exist ({', '.join(labs)}); choose one with --id")
        data_root = roots.get("data_root", DATA_ROOT)
        return max(labs, key=lambda i: (created_at(i, data_root=data_root), i))
    return labs[0]


class Lab:
    """One lab: its namespaces (LabNet), files, daemons and the admin CLI inside it."""

    def __init__(self, lab_id: str, runner: Runner | None = None, *,
                 state_root: Path = STATE_ROOT, data_root: Path = DATA_ROOT) -> None:
        self.runner = runner or Runner()
        self.net = LabNet(lab_id, self.runner, state_root=state_root)
        self.id = self.net.lab_id
        self.dir = data_root / self.id
        self.info: dict[str, Any] = self._load()

    # -- files --------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads((self.dir / "lab.json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def save(self) -> None:
        from nimbus.store.files import write_private

        write_private(self.dir / "lab.json", json.dumps(self.info, indent=2, sort_keys=True))

    @property
    def admin_config(self) -> Path:
        return self.dir / "admin.json"

    def member_dir(self, member: str) -> Path:
        return self.dir / (member if member == "cp" else f"n{member}")

    def log_path(self, member: str) -> Path:
        return self.dir / "logs" / f"{'cp' if member == 'cp' else 'n' + member}.log"

    def log_tail(self, member: str, lines: int = 15) -> str:
        try:
            text = self.log_path(member).read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def command(self) -> tuple[list[str], dict[str, str]]:
        """The nimbus command the lab was made with (the running one before `up`)."""
        if self.info.get("exec"):
            return list(self.info["exec"]), dict(self.info.get("exec_env", {}))
        return self_command()

    def _write_configs(self, nodes: int) -> None:
        from nimbus.config import AgentConfig, ServerConfig, dump_toml
        from nimbus.store.files import ensure_private_dir, write_private

        ensure_private_dir(self.dir)
        ensure_private_dir(self.dir / "logs")
        cp = ensure_private_dir(self.member_dir("cp"))
        server = ServerConfig(listen=f"0.0.0.0:{API_PORT}", data_dir=str(cp / "data"),
                              wireguard_subnet=OVERLAY, wireguard_port=WG_PORT,
                              interface=self.net.wg_ifname("cp"),
                              public_address=self.net.underlay_ip("cp"),
                              heartbeat_interval_sec=HEARTBEAT_SEC).validate()
        write_private(cp / "api.toml", dump_toml(server))
        for n in range(1, nodes + 1):
            d = ensure_private_dir(self.member_dir(str(n)))
            agent = AgentConfig(data_dir=str(d / "data"), interface=self.net.wg_ifname(n),
                                wireguard_port=WG_PORT, docker_host=self.docker_host(str(n)),
                                heartbeat_interval_sec=HEARTBEAT_SEC).validate()
            write_private(d / "agent.toml", dump_toml(agent))

    # -- processes ----------------------------------------------------------------------

    def _spawn(self, member: str, name: str, args: list[str], stdin_data: str | None = None
               ) -> subprocess.Popen[bytes]:
        """Start `nimbus ARGS` in a member's namespace, detached, logging to its log file."""
        prefix, extra = self.command()
        return procs.spawn(self.net, member, name, [*prefix, *args], child_env(extra),
                           self.log_path(member), stdin_data)

    def running(self, name: str) -> bool:
        return procs.running(self.net, name)

    def start_server(self, timeout: float = 60) -> None:
        cfg = self.member_dir("cp") / "api.toml"
        proc = self._spawn("cp", "cp:serve", ["serve", "--config", str(cfg)])
        url = f"https://{self.net.underlay_ip('cp')}:{API_PORT}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError(f"nimbus serve exited ({proc.returncode}):\n"
                               f"{self.log_tail('cp')}")
            probe = [sys.executable, "-c", _HEALTH_PROBE, url, "5"]
            if self.net.run_in("cp", probe, check=False, timeout=20).returncode == 0:
                return
        raise LabError(f"nimbus serve did not answer on {url}:\n{self.log_tail('cp')}")

    def start_agent(self, member: str, token: str | None = None) -> subprocess.Popen[bytes]:
        d = self.member_dir(member)
        args = ["agent", "--config", str(d / "agent.toml"), "--data-dir", str(d / "data")]
        if token is not None:
            args += ["--join", "--token-file", "-"]
        return self._spawn(member, f"{member}:agent", args, stdin_data=token)

    def restart(self, member: str) -> None:
        """Stop and start the control plane ('cp') or a node's agent, keeping their data."""
        if member == "cp":
            procs.stop(self.net, "cp:serve")
            self.start_server()
        else:
            if member not in self.info.get("nodes", {}):
                raise NotFound(f"lab {self.id} has no node {member}")
            procs.stop(self.net, f"{member}:agent")
            self.start_agent(member)

    # -- the admin CLI inside the cp namespace ------------------------------------------

    def docker_host(self, member: str) -> str:
        """DOCKER_HOST of node <member>'s lab engine ("" in a lab without --docker)."""
        if not self.info.get("docker"):
            return ""
        return labdocker.docker_host(self.net.state_root, self.id, member)

    def cli_argv(self, args: list[str]) -> tuple[list[str], dict[str, str]]:
        prefix, extra = self.command()
        argv = [*prefix, "--config", str(self.admin_config), *args]
        return self.runner.wrap(argv, netns=self.net.netns("cp")), child_env(extra)

    def cli(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `nimbus ARGS` as the lab admin in the cp namespace; LabError on failure."""
        prefix, extra = self.command()
        proc = self.runner.run([*prefix, "--config", str(self.admin_config), *args],
                               netns=self.net.netns("cp"), env=child_env(extra),
                               timeout=timeout, check=False)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise LabError(f"nimbus {' '.join(args)}: {detail[-1] if detail else 'failed'}")
        return proc

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli([*args, "-o", "json"]).stdout)

    def bootstrap(self) -> None:
        cp = self.member_dir("cp")
        prefix, extra = self.command()
        argv = [*prefix, "bootstrap", "--data-dir", str(cp / "data"),
                "--server-config", str(cp / "api.toml"), "--output", str(self.admin_config)]
        # SECURITY: the output carries the secret key once; it stays in admin.json (0600).
        proc = self.runner.run(argv, netns=self.net.netns("cp"), env=child_env(extra),
                               timeout=60, check=False)
        if proc.returncode != 0:
            raise LabError(f"nimbus bootstrap failed: {proc.stderr.strip()}")
        from nimbus.store.files import write_private

        conn = json.loads(self.admin_config.read_text())
        conn["api_url"] = f"https://{self.net.underlay_ip('cp')}:{API_PORT}"
        write_private(self.admin_config, json.dumps(conn, indent=2) + "\n")

    # -- up / status / down -------------------------------------------------------------

    def up(self, nodes: int, echo: Callable[[str], None] = print,
           timeout: float | None = None, docker: bool = False) -> dict[str, float]:
        """Build the lab and wait until every node is ready; returns phase durations (s)."""
        if not 1 <= nodes <= netns.MAX_NODES:
            raise LabError(f"--nodes must be 1..{netns.MAX_NODES}")
        if self.info or self.net.state.get("namespaces"):
            raise Conflict(f"lab {self.id} already exists; `nimbus lab down --id {self.id}`")
        prefix, extra = self_command()
        # The lab's agents find the tools (weed, ganesha) where this command found them,
        # also when a later `lab` command restarts one from another shell.
        extra = {**extra, "PATH": os.environ.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin"}
        self.info = {"lab_id": self.id, "created_at": time.time(), "exec": prefix,
                     "exec_env": extra, "overlay": OVERLAY, "cp_wireguard_ip": "10.106.103.1",
                     "nodes": {}, "docker": docker}
        times: dict[str, float] = {}
        t0 = time.monotonic()
        echo(f"lab {self.id}: namespaces nlab-{self.id}-*, underlay {self.net.subnet}")
        self.net.create(nodes)
        self._write_configs(nodes)
        self.save()
        if docker:
            echo(f"starting {nodes} dockerd(s) and loading {labdocker.IMAGE} into each")
            labdocker.LabEngines(self).start([str(n) for n in range(1, nodes + 1)])
        echo("starting the control plane (nimbus serve, WireGuard "
             f"{self.net.wg_ifname('cp')})")
        self.start_server()
        self.bootstrap()
        times["control_plane"] = time.monotonic() - t0
        tokens = {str(n): self.add_node(str(n)) for n in range(1, nodes + 1)}
        echo(f"joining {nodes} node(s) with real join tokens")
        t1 = time.monotonic()
        for member, token in tokens.items():
            self.start_agent(member, token)
        self.wait_ready(timeout or 60 + 5 * nodes)
        times["join_to_ready"] = time.monotonic() - t1
        self.wait_mesh(30)
        times["join_to_full_mesh_config"] = time.monotonic() - t1
        return times

    def add_node(self, member: str) -> str:
        """Create the pending node in the control plane; returns its join token."""
        data = self.cli_json("node", "add", "--get-token", "--ip", self.net.underlay_ip(member),
                             "--name", f"n{member}")
        node = data["node"]
        self.info["nodes"][member] = {"id": node["id"], "name": node["name"],
                                      "wireguard_ip": node["wireguard_ip"]}
        self.save()
        return data["join_token"]

    def api_nodes(self) -> list[dict[str, Any]] | None:
        """`node list` from the API, or None when it does not answer."""
        try:
            return self.cli_json("node", "list")
        except (LabError, CommandError, ValueError):
            return None

    def wait_ready(self, timeout: float) -> None:
        want = {v["id"] for v in self.info.get("nodes", {}).values()}
        deadline = time.monotonic() + timeout
        while True:
            listed = self.api_nodes() or []
            if want <= {n["id"] for n in listed if n.get("status") == "ready"}:
                return
            for member in self.info.get("nodes", {}):
                if not self.running(f"{member}:agent"):
                    raise LabError(f"the agent of node {member} exited:\n"
                                   f"{self.log_tail(member)}")
            if time.monotonic() > deadline:
                states = {n["name"]: n.get("status") for n in listed}
                raise LabError(f"nodes not ready after {timeout:.0f}s: {states}")
            time.sleep(0.5)

    def peer_keys(self, members: list[str]) -> dict[str, set[str]]:
        """Public keys of each member's WireGuard peers (`wg show IF peers`, in parallel)."""
        started = {m: self.runner.popen(["wg", "show", netns.wg_ifname(self.id, m), "peers"],
                                        netns=self.net.netns(m), stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL) for m in members}
        return {m: set(p.communicate(timeout=15)[0].decode().split())
                for m, p in started.items()}

    def wait_mesh(self, timeout: float) -> bool:
        """Wait until every member has every other member as a peer (peer updates applied)."""
        members = list(self.overlay_ips())
        deadline = time.monotonic() + timeout
        while any(len(keys) < len(members) - 1 for keys in self.peer_keys(members).values()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def overlay_ips(self, members: list[str] | None = None) -> dict[str, str]:
        ips = {"cp": self.info.get("cp_wireguard_ip", "10.106.103.1")}
        ips.update({m: v["wireguard_ip"] for m, v in self.info.get("nodes", {}).items()})
        return {m: ip for m, ip in ips.items() if members is None or m in members}

    def ping(self, members: list[str] | None = None, retry_for: float = 0.0) -> Matrix:
        """Ping matrix over the overlay between members (default: all)."""
        return ping_matrix(self.overlay_ips(members),
                           lambda m, argv: self.runner.wrap(argv, netns=self.net.netns(m)),
                           retry_for=retry_for)

    def live_members(self, listed: list[dict[str, Any]] | None = None) -> list[str]:
        """'cp' and the nodes the API still knows (all recorded nodes when it does not answer).

        A node removed with `node delete` stays in lab.json (its namespace is still there),
        but status and pings leave it out: it is no longer part of the mesh.
        """
        listed = self.api_nodes() if listed is None else listed
        nodes = self.info.get("nodes", {})
        if listed is not None:
            known = {n["id"] for n in listed}
            nodes = {m: rec for m, rec in nodes.items() if rec["id"] in known}
        return ["cp", *sorted(nodes, key=int)]

    def status(self) -> dict[str, Any]:
        answered = self.api_nodes()
        listed = {n["id"]: n for n in answered or []}
        nodes = []
        for member in self.live_members(answered)[1:]:
            rec = self.info["nodes"][member]
            api = listed.get(rec["id"])
            status = api.get("status") if api else "unknown"
            nodes.append({"id": rec["id"], "name": rec["name"], "member": member,
                          "netns": self.net.netns(member),
                          "interface": netns.wg_ifname(self.id, member),
                          "wireguard_ip": rec["wireguard_ip"],
                          **({"docker_host": self.docker_host(member)}
                             if self.info.get("docker") else {}),
                          "underlay_ip": (api or {}).get("ip_address")
                          or self.net.underlay_ip(member), "status": status})
        return {"lab_id": self.id,
                "control_plane": {"netns": self.net.netns("cp"),
                                  "interface": netns.wg_ifname(self.id, "cp"),
                                  "wireguard_ip": self.overlay_ips()["cp"],
                                  "underlay_ip": self.net.underlay_ip("cp"),
                                  "api_url": f"https://{self.net.underlay_ip('cp')}:{API_PORT}",
                                  "status": "running" if self.running("cp:serve") else "stopped"},
                **({"docker_image": labdocker.IMAGE} if self.info.get("docker") else {}),
                "nodes": nodes}

    def down(self) -> None:
        """Stop every process and remove namespaces, interfaces, sockets and files."""
        labdocker.LabEngines(self).stop()
        procs.stop_strays(self.net, self.dir)
        netns.destroy(self.id, self.runner, state_root=self.net.state_root)
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.info = {}
