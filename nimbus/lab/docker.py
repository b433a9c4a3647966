"""`nimbus lab --docker`: one dockerd per lab node and a tiny local busybox image in each.

Each node's engine runs as
    nsenter --net=/run/netns/<node ns> unshare --uts --mount --pid --fork --kill-child
            --mount-proc --propagation private  sh -c 'hostname n<N>; exec dockerd …'
* only the network namespace is entered (`ip netns exec` would remount /sys and hide the
  cgroup mounts dockerd needs);
* its own UTS namespace gives each swarm node its own hostname (n1, n2, …);
* its own mount and PID namespaces make teardown crash-proof: when the recorded
  `unshare` dies (even by SIGKILL) the kernel kills dockerd, containerd, the shims and every
  container with it (--kill-child, PID namespace), and their mounts vanish with the mount
  namespace, so nothing under the lab's directories stays mounted.
Files: data root <lab dir>/n<N>/docker (vfs layers), exec root and socket in
/run/nimbus-lab/<id>/docker/n<N>/ (short: containerd's socket path must stay < 108 bytes).
The image is `docker import` of a root filesystem made here from Debian's static busybox,
so no registry is involved (DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 stops swarm tasks from
trying to pull it).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nimbus.errors import NimbusError
from nimbus.lab import netns
from nimbus.sysrun import Runner, which

if TYPE_CHECKING:
    from nimbus.lab.orchestrate import Lab

log = logging.getLogger("nimbus.lab")

IMAGE = "nimbus-lab/busybox:latest"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
DOCKERD_FLAGS = ("--storage-driver=vfs", "--bridge=none", "--iptables=false",
                 "--ip6tables=false", "--log-level=warn")
# What `lab up --docker` needs beyond the plain lab, with the Debian package providing it.
REQUIRED_TOOLS = (("dockerd", "docker.io"), ("docker", "docker.io"), ("nsenter", "util-linux"),
                  ("unshare", "util-linux"), ("busybox", "busybox-static"))


class DockerLabError(NimbusError):
    """A lab engine could not be started or prepared; the message says what to look at."""


def check_requirements(which_: Callable[[str], str | None] = which) -> None:
    """DockerLabError naming the package to install when a tool is missing."""
    for tool, pkg in REQUIRED_TOOLS:
        if which_(tool) is None:
            raise DockerLabError(f"nimbus lab --docker needs `{tool}`: install {pkg}")


# -- paths and argv (pure) ----------------------------------------------------------------

def exec_root(state_root: Path, lab_id: str, member: str) -> Path:
    return state_root / lab_id / "docker" / f"n{member}"


def socket_path(state_root: Path, lab_id: str, member: str) -> Path:
    return exec_root(state_root, lab_id, member) / "docker.sock"


def docker_host(state_root: Path, lab_id: str, member: str) -> str:
    """The DOCKER_HOST of node <member>'s engine, e.g. unix:///run/nimbus-lab/ab12/docker/n1/…"""
    return f"unix://{socket_path(state_root, lab_id, member)}"


def dockerd_argv(netns_name: str, hostname: str, data_root: Path, exec_dir: Path) -> list[str]:
    """The command that starts one lab engine (see the module docstring for each part)."""
    return ["nsenter", f"--net=/run/netns/{netns_name}",
            "unshare", "--uts", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
            "--propagation", "private",
            # hostname comes in as $0, never spliced into the script text.
            "sh", "-c", 'hostname "$0" && exec "$@"', hostname,
            "dockerd", f"--data-root={data_root}", f"--exec-root={exec_dir / 'exec'}",
            f"--pidfile={exec_dir / 'dockerd.pid'}", f"--host=unix://{exec_dir / 'docker.sock'}",
            *DOCKERD_FLAGS]


def rootfs_tar(busybox: Path, applets: list[str]) -> bytes:
    """A root filesystem as a tar: static busybox, a symlink per applet, writable /tmp.

    `applets` are `busybox --list-full` paths (bin/sh, usr/bin/wget, …). /etc/passwd and
    /etc/group hold root only, so tools that look up users (httpd, id, ps) work.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = {"bin", "etc", "root", "tmp", "var", "var/www", "proc", "sys", "dev"}
        for applet in applets:
            dirs |= {str(p) for p in Path(applet).parents if str(p) != "."}
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        data = busybox.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                           ("etc/group", "root:x:0:\n"), ("etc/hostname", "lab\n")):
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(raw), 0o644
            tar.addfile(info, io.BytesIO(raw))
        for applet in sorted(set(applets)):
            if applet in ("bin/busybox", "") or applet.endswith("/"):
                continue
            info = tarfile.TarInfo(applet)
            info.type, info.linkname = tarfile.SYMTYPE, "/bin/busybox"
            tar.addfile(info)
    return buf.getvalue()


def find_busybox() -> Path:
    """The static busybox (busybox-static); a dynamic one would not run in the image."""
    for cand in BUSYBOX_CANDIDATES:
        p = Path(cand)
        if p.is_file() and b"ld-linux" not in p.read_bytes()[:65536]:
            return p
    raise DockerLabError("nimbus lab --docker needs a static busybox: install busybox-static")


# -- the engines of one lab ---------------------------------------------------------------

class LabEngines:
    """Start, prepare and stop the dockerd of each node of a lab."""

    def __init__(self, lab: Lab, runner: Runner | None = None) -> None:
        self.lab = lab
        self.runner = runner or lab.runner

    def _exec_dir(self, member: str) -> Path:
        return exec_root(self.lab.net.state_root, self.lab.id, member)

    def host(self, member: str) -> str:
        return docker_host(self.lab.net.state_root, self.lab.id, member)

    def docker(self, member: str, *args: str, timeout: float = 60,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against node <member>'s engine."""
        return self.runner.run(["docker", "--host", self.host(member), *args], check=check,
                               timeout=timeout)

    def start(self, members: list[str], timeout: float = 90) -> None:
        """Start every member's dockerd, wait until each answers, load the image into each."""
        check_requirements()
        busybox = find_busybox()
        for m in members:
            self._spawn(m)
        deadline = time.monotonic() + timeout
        for m in members:
            self._wait_ready(m, deadline)
        tar_path = self.lab.dir / "busybox-rootfs.tar"
        applets = self.runner.run([str(busybox), "--list-full"]).stdout.split()
        tar_path.write_bytes(rootfs_tar(busybox, applets))
        for m in members:
            self.docker(m, "import", "--change", 'CMD ["sh"]', str(tar_path), IMAGE,
                        timeout=max(30.0, deadline - time.monotonic()))

    def _spawn(self, member: str) -> None:
        exec_dir = self._exec_dir(member)
        exec_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data_root = self.lab.member_dir(member) / "docker"
        data_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        argv = dockerd_argv(self.lab.net.netns(member), f"n{member}", data_root, exec_dir)
        env = {**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}
        log_path = self.lab.dir / "logs" / f"n{member}-docker.log"
        log.debug("[#] %s &", " ".join(argv))
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        with contextlib.suppress(ValueError):  # exited at once: _wait_ready reports it
            self.lab.net.record_process(f"{member}:dockerd", proc.pid, argv)

    def _wait_ready(self, member: str, deadline: float) -> None:
        while True:
            if self.docker(member, "version", "--format", "{{.Server.Version}}",
                           check=False, timeout=10).returncode == 0:
                return
            if not self.lab.running(f"{member}:dockerd") or time.monotonic() > deadline:
                tail = self.lab.dir / "logs" / f"n{member}-docker.log"
                with contextlib.suppress(OSError):
                    tail_text = "\n".join(tail.read_text(errors="replace").splitlines()[-10:])
                    raise DockerLabError(f"dockerd of node {member} did not start:\n{tail_text}")
                raise DockerLabError(f"dockerd of node {member} did not start")
            time.sleep(0.3)

    def stop(self, grace: float = 5) -> None:
        """Stop every engine of the lab (SIGTERM dockerd, then SIGKILL its unshare)."""
        records = [r for r in self.lab.net.state.get("processes", [])
                   if str(r.get("name", "")).endswith(":dockerd")]
        live = [r for r in records if netns._same_process(r)]
        for rec in live:
            for child in _children(int(rec["pid"])):
                log.debug("[#] kill -TERM %d (dockerd of %s)", child, rec["name"])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while live and time.monotonic() < deadline:
            time.sleep(0.1)
            live = [r for r in live if netns._same_process(r)]
        for rec in live:
            # --kill-child: the kernel then kills the whole PID namespace (containers too).
            log.debug("[#] kill -KILL %d (%s)", rec["pid"], rec["name"])
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(rec["pid"]), signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(netns._same_process(r) for r in live) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.lab.net.state["processes"] = [r for r in self.lab.net.state.get("processes", [])
                                           if r not in records]
        if self.lab.net.state_root.joinpath(self.lab.id).is_dir():
            self.lab.net._save()
        shutil.rmtree(self.lab.net.state_root / self.lab.id / "docker", ignore_errors=True)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]
