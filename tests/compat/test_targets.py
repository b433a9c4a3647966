"""The built dist/nimbus.pyz, unchanged, on every system it claims (issue 12).

Each target runs the whole first-day path with its own interpreter: `version`, `serve
--no-wireguard`, `bootstrap`, `configure`, `node add`, an agent joining with `--no-wireguard`,
and `node list` showing it ready. Control plane, CLI and agent all run on the target.

* every CPython on this machine: /usr/bin/python3 and each pyenv version >= 3.9;
* Debian 11 amd64 (CPython 3.9, glibc 2.31) in a chroot (own mount namespace: /dev bound,
  /proc mounted, the work dir bound on /mnt; nothing is left mounted);
* Debian 12 arm64 (CPython 3.11) under qemu-user: `qemu-aarch64-static -L <root>`.
The Debian roots are built once with debootstrap and cached (tests/compat/rootfs.py), so a
warm run costs only the scenarios; the arm64 one is the slow part (emulated CPU, about a
minute). The Debian targets need root (CI has it; there they must not skip).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.compat.rootfs import ensure_rootfs
from tests.harness import PYZ, REPO, free_port

SLOW = 600  # seconds for one step under qemu on a busy 2-core machine


class Target:
    """How to run the pyz on one system, and how that system sees the work dir."""

    name = ""
    machine = ""
    python_prefix = "CPython 3."

    def argv(self, work: Path, args: list[str]) -> list[str]:
        raise NotImplementedError

    def path(self, work: Path, p: Path) -> str:
        return str(p)


class HostPython(Target):
    def __init__(self, python: str) -> None:
        self.python = python
        self.name = python
        self.machine = os.uname().machine

    def argv(self, work: Path, args: list[str]) -> list[str]:
        return [self.python, str(work / "nimbus.pyz"), *args]


class Chroot(Target):
    """A foreign Debian userland on this kernel, in a private mount namespace per process."""

    SCRIPT = ('R=$1; W=$2; shift 2; mount --bind /dev "$R/dev" && mount -t proc proc "$R/proc" '
              '&& mount --bind "$W" "$R/mnt" && exec chroot "$R" "$@"')

    def __init__(self, suite: str, arch: str, python_prefix: str) -> None:
        self.suite, self.arch = suite, arch
        self.name = f"debian-{suite}-{arch}-chroot"
        self.machine = "x86_64"
        self.python_prefix = python_prefix

    def argv(self, work: Path, args: list[str]) -> list[str]:
        root = ensure_rootfs(self.suite, self.arch)
        (root / "mnt").mkdir(exist_ok=True)  # roots cached before the recipe made it
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", self.SCRIPT, "sh",
                str(root), str(work), "/usr/bin/python3", "/mnt/nimbus.pyz", *args]

    def path(self, work: Path, p: Path) -> str:
        return "/mnt/" + str(p.relative_to(work))


class Qemu(Target):
    """Another machine's userland under qemu-user; paths are the host's (qemu falls back)."""

    def __init__(self, suite: str, arch: str, qemu_arch: str, python_prefix: str) -> None:
        self.suite, self.arch, self.qemu = suite, arch, f"qemu-{qemu_arch}-static"
        self.name = f"debian-{suite}-{arch}-qemu"
        self.machine = qemu_arch
        self.python_prefix = python_prefix

    def argv(self, work: Path, args: list[str]) -> list[str]:
        if shutil.which(self.qemu) is None:
            pytest.skip(f"{self.qemu} is missing (apt install qemu-user-static)")
        root = ensure_rootfs(self.suite, self.arch)
        return [self.qemu, "-L", str(root), str(root / "usr/bin/python3"),
                str(work / "nimbus.pyz"), *args]


def host_pythons() -> list[str]:
    """/usr/bin/python3 and every pyenv CPython the pyz supports, once each."""
    found: dict[str, str] = {}
    candidates = [Path("/usr/bin/python3"),
                  *sorted((Path.home() / ".pyenv" / "versions").glob("3.*/bin/python3"))]
    for py in candidates:
        if not py.exists():
            continue
        try:
            out = subprocess.run([str(py), "-c", "import sys; print(*sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if tuple(int(x) for x in out.split()) >= (3, 9):
            found.setdefault(os.path.realpath(py), str(py))
    return sorted(found.values())


TARGETS = [
    *[pytest.param(HostPython(py), id=f"host-{Path(py).parts[-3] if 'pyenv' in py else py}")
      for py in host_pythons()],
    pytest.param(Chroot("bullseye", "amd64", "CPython 3.9."), id="debian11-amd64-chroot",
                 marks=pytest.mark.root),
    pytest.param(Qemu("bookworm", "arm64", "aarch64", "CPython 3.11."), id="debian12-arm64-qemu",
                 marks=[pytest.mark.root, pytest.mark.timeout(3600)]),
]


@pytest.fixture(scope="module")
def pyz() -> Path:
    from tests.integration.test_zipapp import _stale

    if _stale():
        result = subprocess.run([sys.executable, str(REPO / "build.py")], cwd=REPO,
                                capture_output=True, text=True, timeout=1200, check=False)
        assert result.returncode == 0, f"build.py failed:\n{result.stdout}\n{result.stderr}"
    return PYZ


class Run:
    """The target's processes for one scenario; every one is stopped by PID at the end."""

    def __init__(self, target: Target, work: Path) -> None:
        self.target, self.work = target, work
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME": target.path(work, work / "home"),
                    "NIMBUS_CACHE": target.path(work, work / "cache")}
        self.procs: list[subprocess.Popen[bytes]] = []

    def p(self, path: Path) -> str:
        return self.target.path(self.work, path)

    def cli(self, *args: str, stdin: str | None = None) -> str:
        argv = self.target.argv(self.work, list(args))
        r = subprocess.run(argv, env=self.env, capture_output=True, text=True, input=stdin,
                           timeout=SLOW, check=False, cwd=self.work)
        assert r.returncode == 0, f"{self.target.name}: nimbus {' '.join(args)}:\n{r.stderr}"
        assert "Traceback" not in r.stderr
        return r.stdout

    def background(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        argv = self.target.argv(self.work, list(args))
        with open(self.work / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    cwd=self.work)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop_all(self) -> list[int | None]:
        codes = []
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            codes.append(proc.returncode)
        return codes


def wait_for(check: Callable[[], Any], what: str, proc: subprocess.Popen[bytes] | None = None,
             log: Callable[[], str] = str, timeout: float = SLOW) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited ({proc.returncode}) while waiting for {what}:\n{log()}")
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log()}")


def _healthy(url: str) -> bool:
    import ssl
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url + "/healthz", context=ctx, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _node_status(conn: dict[str, Any], node_id: str) -> str | None:
    """Polled from the host (cheap), so the emulated CLI runs once at the end."""
    from nimbus.client import ApiClient, HmacAuth
    from nimbus.errors import NimbusError

    client = ApiClient(conn["api_url"], conn["tls_ca"],
                       auth=HmacAuth(conn["access_key"], conn["secret_key"]), timeout=10)
    try:
        node = client.request("GET", f"/v1/nodes/{node_id}")
    except NimbusError:
        return None
    finally:
        client.close()
    return node.get("status") if isinstance(node, dict) else None


@pytest.mark.parametrize("target", TARGETS)
def test_first_day_on_target(target: Target, pyz: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    (work / "home").mkdir(parents=True)
    shutil.copy(pyz, work / "nimbus.pyz")
    run = Run(target, work)
    started = time.monotonic()
    try:
        version = json.loads(run.cli("version", "-o", "json"))
        assert version["python"].startswith(target.python_prefix), version
        assert version["platform"].startswith(f"Linux {target.machine}, glibc "), version

        port = free_port()
        url = f"https://127.0.0.1:{port}"
        (work / "api.toml").write_text(f'listen = "127.0.0.1:{port}"\n'
                                       f'data_dir = "{run.p(work / "data")}"\n'
                                       "heartbeat_interval_sec = 2\n")
        server = run.background("serve", "serve", "--config", run.p(work / "api.toml"),
                                "--no-wireguard")
        wait_for(lambda: _healthy(url), "the control plane", server, lambda: run.log("serve"))

        run.cli("bootstrap", "--data-dir", run.p(work / "data"),
                "--output", run.p(work / "admin.json"))
        conn = json.loads((work / "admin.json").read_text())
        assert conn["api_url"] == url
        run.cli("configure", "--from", run.p(work / "admin.json"))

        added = json.loads(run.cli("node", "add", "--get-token", "--ip", "192.0.2.10",
                                   "--name", "compat", "-o", "json"))
        node_id = added["node"]["id"]
        (work / "token").write_text(added["join_token"])
        (work / "token").chmod(0o600)
        (work / "agent.toml").write_text("")
        agent = run.background("agent", "agent", "--join", "--token-file", run.p(work / "token"),
                               "--config", run.p(work / "agent.toml"),
                               "--data-dir", run.p(work / "agent"), "--no-wireguard")
        wait_for(lambda: _node_status(conn, node_id) == "ready", "the agent to join", agent,
                 lambda: run.log("agent"))

        nodes = json.loads(run.cli("node", "list", "-o", "json"))
        assert [(n["name"], n["status"]) for n in nodes] == [("compat", "ready")]
        assert nodes[0]["arch"] == target.machine
    finally:
        codes = run.stop_all()
    assert codes[-1] == 0, f"serve exited {codes[-1]}:\n{run.log('serve')}"
    print(f"{target.name}: first-day scenario in {time.monotonic() - started:.0f} s")
