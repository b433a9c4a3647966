"""The lab's daemons: the nimbus command to run, detached starts, recorded stops, strays."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from nimbus.lab import netns
from nimbus.lab.netns import LabNet

log = logging.getLogger("nimbus.lab")


def self_command() -> tuple[list[str], dict[str, str]]:
    """argv prefix and extra env that run this very nimbus: the zipapp, or `-m nimbus`."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and os.path.isfile(argv0) and zipfile.is_zipfile(argv0):
        return [sys.executable, os.path.abspath(argv0)], {}
    import nimbus

    root = str(Path(nimbus.__file__).resolve().parent.parent)
    return [sys.executable, "-m", "nimbus"], {"PYTHONPATH": root}


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without NIMBUS_* (a NIMBUS_TOKEN must not replace the admin)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
    env.update(extra)
    return env


def spawn(net: LabNet, member: str, name: str, argv: list[str], env: dict[str, str],
          log_path: Path, stdin_data: str | None = None) -> subprocess.Popen[bytes]:
    """Start argv in a member's namespace in its own session (it outlives us) and record it."""
    full = net.runner.wrap(argv, netns=net.netns(member))
    log.debug("[#] %s &", " ".join(full))
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(full, stdin=subprocess.PIPE if stdin_data else
                                subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    if stdin_data is not None and proc.stdin is not None:
        # SECURITY: a join token goes through stdin, never argv.
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(stdin_data.encode())
        proc.stdin.close()
    with contextlib.suppress(ValueError):  # already gone: the caller sees it exit
        net.record_process(name, proc.pid, full)
    return proc


def running(net: LabNet, name: str) -> bool:
    return any(r.get("name") == name and netns._same_process(r)
               for r in net.state["processes"])


def stop(net: LabNet, name: str, timeout: float = 15) -> None:
    """SIGTERM (then SIGKILL) the live recorded processes called `name`; forget them."""
    live = [r for r in net.state["processes"]
            if r.get("name") == name and netns._same_process(r)]
    netns.terminate([int(r["pid"]) for r in live],
                    lambda pid: any(int(r["pid"]) == pid and netns._same_process(r)
                                    for r in live),
                    timeout)
    net.state["processes"] = [r for r in net.state["processes"] if r.get("name") != name]
    net._save()


def strays(net: LabNet, lab_dir: Path) -> list[int]:
    """Daemons of this lab that were never recorded (`lab up` killed right after a start).

    Each one names a file of the lab's dir in its argv and runs in one of the lab's
    namespaces (or is still `ip netns exec nlab-<id>-…`); nothing else qualifies.
    """
    mark, ns_mark = f"{lab_dir}/".encode(), f"{netns.NS_PREFIX}{net.lab_id}-"
    lab_ns = set()
    for ns in netns.list_namespaces(net.runner):
        if ns.startswith(ns_mark):
            with contextlib.suppress(OSError):
                lab_ns.add(os.stat(f"/run/netns/{ns}").st_ino)
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if not any(mark in a for a in argv) or int(proc.name) == os.getpid():
                continue
            if os.stat(proc / "ns" / "net").st_ino in lab_ns or any(
                    a.startswith(ns_mark.encode()) for a in argv):
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


def stop_strays(net: LabNet, lab_dir: Path) -> None:
    netns.terminate(strays(net, lab_dir), lambda pid: pid in strays(net, lab_dir))


