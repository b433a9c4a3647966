"""The agent's supervisor of subsystem processes (nfs-ganesha, weed): start, restart, stop.

One `Supervisor` per agent. Each process has a name and a spec (argv, env, cwd); `ensure`
makes the spec run, a background thread restarts a process that died with back-off, and
`stop` ends it (its whole process group: children run in their own session, so a signal
to the agent's terminal or group never reaches them and their helpers are reaped too).
Output goes to `<log_dir>/<name>.log` (0600, copied to `.1` and truncated past a size cap).
What should run is persisted in `state_file`, so `restore()` at agent start re-ensures it
and adopts a process that survived an agent crash (same pid *and* kernel start time)
instead of starting a second one that would fight it for its port.
SECURITY: env values are never logged (only their names); secrets belong in 0600 files
whose paths go on argv, never on argv themselves.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal as signals
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nimbus.errors import BadRequest, NimbusError
from nimbus.store.files import ensure_private_dir, write_private

log = logging.getLogger("nimbus.agent.supervisor")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")
RUNNING, BACKOFF, STOPPED, STOPPING = "running", "backoff", "stopped", "stopping"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ProcessError(NimbusError):
    """A supervised process could not be started (missing binary, bad cwd, …)."""


@dataclass(frozen=True)
class Spec:
    """What to run; `key()` is what `ensure` compares (the stop settings are not)."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = ""
    stop_signal: int = int(signals.SIGTERM)
    stop_timeout: float = 10.0

    def key(self) -> tuple[Any, ...]:
        return self.argv, self.env, self.cwd

    def to_dict(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "env": dict(self.env), "cwd": self.cwd,
                "stop_signal": self.stop_signal, "stop_timeout": self.stop_timeout}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Spec:
        return cls(tuple(data["argv"]), tuple(sorted(dict(data.get("env") or {}).items())),
                   str(data.get("cwd") or ""), int(data.get("stop_signal", signals.SIGTERM)),
                   float(data.get("stop_timeout", 10.0)))


@dataclass
class _Proc:
    name: str
    spec: Spec
    state: str = STOPPED
    popen: subprocess.Popen[bytes] | None = None  # None for a process adopted after restart
    pid: int | None = None
    ticks: str = ""  # the kernel's start time of pid: tells our process from a reused pid
    starts: int = 0
    failures: int = 0  # consecutive short runs: the back-off step
    started_at: float = 0.0  # monotonic
    due: float = 0.0  # monotonic: when a backed-off process is started again
    since: float = 0.0  # wall clock of the last state change
    last_exit: int | str | None = None
    wanted: bool = True  # persisted: False only after stop(), not after stop_all()


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) of a live pid, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _alive(pid: int, ticks: str) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == ticks


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    """Keeps named child processes running; thread-safe; one per agent."""

    def __init__(self, log_dir: Path, clock: Callable[[], float] = time.monotonic,
                 backoff: Sequence[float] = (1, 2, 5, 10, 30, 60), *,
                 state_file: Path | None = None, wall: Callable[[], float] = time.time,
                 log_max_bytes: int = 1 << 20, stable_after: float = 60.0,
                 poll_interval: float = 0.2) -> None:
        self.log_dir = Path(log_dir)
        self.clock, self.wall = clock, wall
        self.backoff = tuple(float(b) for b in backoff) or (1.0,)
        self.state_file = state_file
        self.log_max_bytes, self.stable_after = log_max_bytes, stable_after
        self.poll_interval = poll_interval
        self._procs: dict[str, _Proc] = {}
        self._lock = threading.RLock()  # the table, shared with the watcher
        self._op = threading.Lock()  # one ensure/stop at a time (they wait for exits)
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public -------------------------------------------------------------------------

    def ensure(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
               cwd: Path | None = None, stop_signal: int = signals.SIGTERM,
               stop_timeout: float = 10.0) -> None:
        """Start `name` if absent, restart it if argv/env/cwd changed, else do nothing.

        A spawn failure raises ProcessError; the process stays wanted and is retried with
        back-off, so a binary installed later is picked up without another call.
        """
        if not NAME_RE.match(name):
            raise BadRequest(f"invalid process name {name!r}")
        if not argv or not all(isinstance(a, str) and a for a in argv):
            raise BadRequest(f"process {name}: argv must be non-empty strings")
        spec = Spec(tuple(argv), tuple(sorted((env or {}).items())), str(cwd or ""),
                    int(stop_signal), float(stop_timeout))
        with self._op:
            with self._lock:
                proc = self._procs.get(name)
                if proc and proc.state in (RUNNING, BACKOFF) and proc.spec.key() == spec.key():
                    if proc.spec != spec:
                        proc.spec = spec
                        self._persist()
                    return
            if proc and proc.state in (RUNNING, BACKOFF):
                log.info("%s: its command line or environment changed; restarting it", name)
                self._terminate(proc)
            with self._lock:
                proc = self._procs.setdefault(name, _Proc(name, spec))
                proc.spec, proc.failures, proc.wanted = spec, 0, True
                self._start(proc, raising=True)
        self._watch()

    def signal(self, name: str, sig: int) -> bool:
        """Send sig to the process itself (not its group); False when it is not running."""
        with self._lock:
            proc = self._procs.get(name)
            if not proc or proc.state != RUNNING or proc.pid is None:
                return False
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                return False
            log.info("%s: sent %s to pid %d", name, signals.Signals(sig).name, proc.pid)
            return True

    def stop(self, name: str) -> None:
        """Stop `name` for good (stop_signal, SIGKILL after stop_timeout) and forget it."""
        with self._op:
            with self._lock:
                proc = self._procs.get(name)
                if proc is None or (proc.state == STOPPED and not proc.wanted):
                    return
                proc.wanted = False
            self._terminate(proc)
            with self._lock:
                self._persist()

    def stop_all(self) -> None:
        """Agent shutdown: stop every process and the watcher; the wish list is kept on
        disk, so the next agent start (`restore`) brings them back."""
        self._halt.set()
        with self._op:
            for proc in list(self._procs.values()):
                if proc.state in (RUNNING, BACKOFF):
                    self._terminate(proc)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def status(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {p.name: {"state": RUNNING if p.state == STOPPING else p.state,
                             "pid": p.pid if p.state == RUNNING else None,
                             "restarts": max(0, p.starts - 1), "since": p.since,
                             "last_exit": p.last_exit, "log": str(self.log_path(p.name))}
                    for p in self._procs.values()}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def restore(self) -> None:
        """Agent start: bring back what ran before, adopting survivors of an agent crash."""
        self._halt.clear()
        for name, entry in self._load().items():
            try:
                spec = Spec.from_dict(entry)
            except (KeyError, TypeError, ValueError):
                log.warning("%s: unreadable entry in %s; ignored", name, self.state_file)
                continue
            pid, ticks = entry.get("pid"), str(entry.get("ticks") or "")
            with self._lock:
                proc = self._procs.setdefault(name, _Proc(name, spec))
                if isinstance(pid, int) and ticks and _alive(pid, ticks):
                    proc.state, proc.pid, proc.ticks, proc.popen = RUNNING, pid, ticks, None
                    proc.started_at, proc.since, proc.starts = self.clock(), self.wall(), 1
                    log.info("%s: adopted pid %d, still running from before", name, pid)
                else:
                    self._start(proc, raising=False)
        with self._lock:
            self._persist()
        self._watch()

    def tick(self) -> None:
        """One round of the watcher: reap exits, start due processes, cap log sizes."""
        with self._lock:
            for proc in self._procs.values():
                if proc.state == RUNNING:
                    code = self._exit_code(proc)
                    if code is not None:
                        self._crashed(proc, code)
                elif proc.state == BACKOFF and self.clock() >= proc.due:
                    self._start(proc, raising=False)
                self._cap_log(proc.name)

    # -- internals ----------------------------------------------------------------------

    def _watch(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._halt.clear()
            self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._halt.wait(self.poll_interval):
            try:
                self.tick()
            except Exception:  # the watcher must outlive any one failure
                log.exception("supervisor round failed")

    def _exit_code(self, proc: _Proc) -> int | str | None:
        if proc.popen is not None:
            return proc.popen.poll()
        if proc.pid is None or not _alive(proc.pid, proc.ticks):
            return "unknown (adopted process)"
        return None

    def _child_env(self, spec: Spec) -> dict[str, str]:
        # Not the agent's environment: it may hold credentials (NIMBUS_TOKEN, …).
        env = {"PATH": os.environ.get("PATH") or DEFAULT_PATH, "LANG": "C.UTF-8"}
        env.update(dict(spec.env))
        return env

    def _start(self, proc: _Proc, raising: bool) -> None:
        """Spawn proc (lock held); a failure puts it in back-off."""
        ensure_private_dir(self.log_dir)
        spec = proc.spec
        fd = os.open(self.log_path(proc.name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.wall()))
            os.write(fd, f"--- {stamp} nimbus starts {' '.join(spec.argv)}\n".encode())
            popen = subprocess.Popen(  # argv from the subsystem, never a shell
                list(spec.argv), stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                env=self._child_env(spec), cwd=spec.cwd or None, start_new_session=True,
                close_fds=True)
        except OSError as exc:
            os.close(fd)
            self._backoff(proc, f"cannot start: {exc.strerror or exc}")
            if raising:
                raise ProcessError(f"{proc.name}: cannot start {spec.argv[0]}: "
                                   f"{exc.strerror or exc}") from None
            return
        os.close(fd)
        stat = _proc_stat(popen.pid)
        proc.popen, proc.pid, proc.ticks = popen, popen.pid, stat[1] if stat else ""
        proc.state, proc.starts = RUNNING, proc.starts + 1
        proc.started_at, proc.since = self.clock(), self.wall()
        log.info("%s: started pid %d: %s%s", proc.name, popen.pid, " ".join(spec.argv),
                 f" (env {', '.join(k for k, _ in spec.env)})" if spec.env else "")
        self._persist()

    def _crashed(self, proc: _Proc, code: int | str) -> None:
        ran, pid = self.clock() - proc.started_at, proc.pid
        if ran >= self.stable_after:
            proc.failures = 0  # it ran well for a while: start over at the first step
        self._backoff(proc, code)
        log.warning("%s: pid %s exited (%s) after %.1fs; restarting in %.1fs", proc.name,
                    pid, code, ran, proc.due - self.clock())

    def _backoff(self, proc: _Proc, last_exit: int | str) -> None:
        proc.failures += 1
        proc.due = self.clock() + self.backoff[min(proc.failures, len(self.backoff)) - 1]
        proc.state, proc.last_exit, proc.since = BACKOFF, last_exit, self.wall()
        proc.popen, proc.pid = None, None

    def _terminate(self, proc: _Proc) -> None:
        """Stop proc's group and reap it (lock not held: this waits up to stop_timeout)."""
        with self._lock:
            popen, pid, ticks = proc.popen, proc.pid, proc.ticks
            proc.state = STOPPING if proc.state == RUNNING else STOPPED
        code: int | str | None = proc.last_exit
        if pid is not None:
            _killpg(pid, proc.spec.stop_signal)
            code = self._wait(popen, pid, ticks, proc.spec.stop_timeout)
            if code is None:
                log.warning("%s: pid %d ignored %s for %gs; killing it", proc.name, pid,
                            signals.Signals(proc.spec.stop_signal).name, proc.spec.stop_timeout)
                _killpg(pid, signals.SIGKILL)
                code = self._wait(popen, pid, ticks, 30.0)
            _killpg(pid, signals.SIGKILL)  # helpers it left behind in its group
            log.info("%s: pid %d stopped (%s)", proc.name, pid, code)
        with self._lock:
            proc.state, proc.popen, proc.pid, proc.since = STOPPED, None, None, self.wall()
            proc.last_exit = code

    def _wait(self, popen: subprocess.Popen[bytes] | None, pid: int, ticks: str,
              timeout: float) -> int | str | None:
        if popen is not None:
            try:
                return popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        deadline = time.monotonic() + timeout
        while _alive(pid, ticks):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        return "unknown (adopted process)"

    def _cap_log(self, name: str) -> None:
        """Past log_max_bytes: copy to .1 and truncate in place (the child holds the file
        open with O_APPEND, so a rename would not free anything)."""
        path = self.log_path(name)
        try:
            if path.stat().st_size <= self.log_max_bytes:
                return
            data = path.read_bytes()[-self.log_max_bytes:]
            write_private(path.with_name(path.name + ".1"), data)
            os.truncate(path, 0)
        except OSError as exc:
            log.debug("%s: log rotation failed: %s", name, exc)

    def _persist(self) -> None:
        if self.state_file is None:
            return
        table = {p.name: {**p.spec.to_dict(), "pid": p.pid, "ticks": p.ticks}
                 for p in self._procs.values() if p.wanted}
        ensure_private_dir(self.state_file.parent)
        write_private(self.state_file, json.dumps({"version": 1, "processes": table},
                                                  indent=2, sort_keys=True) + "\n")

    def _load(self) -> dict[str, dict[str, Any]]:
        if self.state_file is None:
            return {}
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("reading %s: %s; starting with no processes", self.state_file, exc)
            return {}
        table = data.get("processes") if isinstance(data, dict) else None
        return {k: v for k, v in (table or {}).items()
                if isinstance(v, dict) and NAME_RE.match(str(k))}
