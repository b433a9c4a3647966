"""The agent's process supervisor, with real child processes (python one-liners, sh, sleep)."""

from __future__ import annotations

import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nimbus.agent.supervisor import ProcessError, Supervisor
from nimbus.errors import BadRequest

PY = sys.executable
SLEEPER = [PY, "-c", "import time; time.sleep(600)"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2] not in "ZX"


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    made: list[Supervisor] = []

    def build(**kw: Any) -> Supervisor:
        kw.setdefault("state_file", tmp_path / "supervisor.json")
        sup = Supervisor(tmp_path / "logs", **kw)
        made.append(sup)
        return sup

    yield build
    for sup in made:
        sup.stop_all()


def test_ensure_starts_once_and_restarts_only_on_a_changed_spec(make):
    sup = make()
    sup.ensure("svc", SLEEPER)
    first = sup.status()["svc"]
    assert first["state"] == "running" and alive(first["pid"]) and first["restarts"] == 0
    sup.ensure("svc", SLEEPER)
    assert sup.status()["svc"]["pid"] == first["pid"]
    sup.ensure("svc", SLEEPER, env={"X": "1"})
    second = sup.status()["svc"]
    assert second["pid"] != first["pid"] and second["restarts"] == 1
    assert not alive(first["pid"])


def test_the_child_runs_in_its_own_session_without_the_agents_environment(make, tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("NIMBUS_TOKEN", "agent-secret")
    out = tmp_path / "out"
    sup = make()
    sup.ensure("env", [PY, "-c", "import os,json,sys,time; "
                       f"open({str(out)!r},'w').write(json.dumps([dict(os.environ), "
                       "os.getsid(0), os.getpgid(0)])); time.sleep(600)"],
               env={"WANTED": "yes"}, cwd=tmp_path)
    pid = sup.status()["env"]["pid"]
    wait_for(lambda: out.exists() and out.read_text(), "the child's report")
    import json

    env, sid, pgid = json.loads(out.read_text())
    assert env["WANTED"] == "yes" and "NIMBUS_TOKEN" not in env and "PATH" in env
    assert sid == pid and pgid == pid and sid != os.getsid(0)


def test_a_crash_backs_off_on_the_clock_then_restarts(make):
    clock = Clock()
    sup = make(clock=clock, backoff=(5, 30), poll_interval=3600)  # ticks by hand
    sup.ensure("crash", [PY, "-c", "import sys; sys.exit(3)"])
    wait_for(lambda: (sup.tick(), sup.status()["crash"]["state"] == "backoff")[1], "an exit")
    st = sup.status()["crash"]
    assert st["last_exit"] == 3 and st["pid"] is None
    clock.now += 4.9
    sup.tick()
    assert sup.status()["crash"]["state"] == "backoff"  # not before its 5 s
    clock.now += 0.2
    sup.tick()
    assert sup.status()["crash"]["restarts"] == 1
    wait_for(lambda: (sup.tick(), sup.status()["crash"]["state"] == "backoff")[1], "a 2nd exit")
    clock.now += 29
    sup.tick()
    assert sup.status()["crash"]["restarts"] == 1  # second step: 30 s
    clock.now += 1
    sup.tick()
    assert sup.status()["crash"]["restarts"] == 2


def test_the_watcher_thread_restarts_a_killed_process_on_its_own(make):
    sup = make(backoff=(0,), poll_interval=0.05)
    sup.ensure("svc", SLEEPER)
    pid = sup.status()["svc"]["pid"]
    os.kill(pid, signal.SIGKILL)
    new = wait_for(lambda: sup.status()["svc"]["pid"] not in (None, pid)
                   and sup.status()["svc"]["pid"], "a restart")
    assert alive(new) and sup.status()["svc"]["last_exit"] == -signal.SIGKILL
    assert sup.status()["svc"]["restarts"] == 1


def test_stop_kills_what_ignores_the_stop_signal_and_its_whole_group(make, tmp_path):
    pidfile = tmp_path / "helper.pid"
    sup = make()
    # sh ignores TERM and leaves a helper (sleep) in its group: both must go.
    sup.ensure("stubborn", ["sh", "-c", f"trap '' TERM; sleep 600 & echo $! > {pidfile}; wait; "
                            "sleep 600"], stop_timeout=0.5)
    pid = sup.status()["stubborn"]["pid"]
    helper = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), "helper"))
    sup.stop("stubborn")
    st = sup.status()["stubborn"]
    assert st["state"] == "stopped" and st["last_exit"] == -signal.SIGKILL
    assert not alive(pid)
    wait_for(lambda: not alive(helper), "the helper to die")


def test_a_missing_binary_is_a_clear_error_and_stays_wanted(make, tmp_path):
    sup = make(poll_interval=3600)
    with pytest.raises(ProcessError, match=r"cannot start /nonexistent/ganesha\.nfsd"):
        sup.ensure("nfs", ["/nonexistent/ganesha.nfsd", "-F"])
    st = sup.status()["nfs"]
    assert st["state"] == "backoff" and "cannot start" in st["last_exit"]


def test_names_and_argv_are_checked(make):
    sup = make()
    for bad in ("", "../x", "A", "a/b", "x" * 64):
        with pytest.raises(BadRequest):
            sup.ensure(bad, SLEEPER)
    with pytest.raises(BadRequest):
        sup.ensure("ok", [])


def test_signal_reaches_the_process(make, tmp_path):
    sup = make()
    assert sup.signal("absent", signal.SIGHUP) is False
    sup.ensure("hup", [PY, "-u", "-c", "import signal,time; signal.signal(signal.SIGHUP, "
                       "lambda *a: print('reloaded', flush=True)); print('up', flush=True); "
                       "time.sleep(600)"])
    log = sup.log_path("hup")
    wait_for(lambda: "up" in log.read_text(), "start-up")
    assert sup.signal("hup", signal.SIGHUP) is True
    wait_for(lambda: "reloaded" in log.read_text(), "the HUP handler")
    assert sup.status()["hup"]["state"] == "running"


def test_output_goes_to_a_private_log_that_is_capped(make):
    sup = make(log_max_bytes=4096, poll_interval=3600)
    sup.ensure("chatty", [PY, "-c", "import sys,time; sys.stdout.write('x'*10000 + '\\n'); "
                          "sys.stdout.flush(); time.sleep(600)"])
    log = sup.log_path("chatty")
    wait_for(lambda: log.stat().st_size > 10000, "the output")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    sup.tick()
    assert log.stat().st_size == 0
    rotated = log.with_name("chatty.log.1")
    assert rotated.stat().st_size == 4096 and stat.S_IMODE(rotated.stat().st_mode) == 0o600


def test_env_values_are_never_logged(make, caplog):
    caplog.set_level(logging.DEBUG, logger="nimbus")
    sup = make()
    sup.ensure("svc", SLEEPER, env={"SECRET_FILE": "value-that-must-not-appear"})
    sup.ensure("svc", SLEEPER, env={"SECRET_FILE": "another-value-not-to-log"})
    sup.stop("svc")
    assert "SECRET_FILE" in caplog.text
    assert "value-that-must-not-appear" not in caplog.text
    assert "another-value-not-to-log" not in caplog.text
    assert "value" not in sup.log_path("svc").read_text()


def test_restore_adopts_a_survivor_of_an_agent_crash(make):
    old = make(poll_interval=3600)
    old.ensure("svc", SLEEPER)
    pid = old.status()["svc"]["pid"]
    new = make(poll_interval=3600)  # the agent died (kill -9): its child lives on
    new.restore()
    st = new.status()["svc"]
    assert st["state"] == "running" and st["pid"] == pid  # not a second copy
    new.stop("svc")
    assert not alive(pid)


def test_restore_starts_what_was_wanted_and_forgets_what_was_stopped(make):
    first = make()
    first.ensure("keep", SLEEPER)
    first.ensure("gone", SLEEPER)
    first.stop("gone")
    old_pid = first.status()["keep"]["pid"]
    first.stop_all()  # agent shutdown: processes end, the wish list stays
    assert not alive(old_pid)
    second = make()
    second.restore()
    st = second.status()
    assert set(st) == {"keep"} and st["keep"]["state"] == "running"
    assert st["keep"]["pid"] != old_pid and alive(st["keep"]["pid"])


def test_restore_ignores_a_reused_pid(make, tmp_path):
    import json

    first = make()
    first.ensure("svc", SLEEPER)
    first.stop_all()
    path = tmp_path / "supervisor.json"
    data = json.loads(path.read_text())
    data["processes"]["svc"]["pid"] = os.getpid()  # alive, but not the process we started
    path.write_text(json.dumps(data))
    second = make()
    second.restore()
    assert second.status()["svc"]["pid"] != os.getpid()


def test_a_damaged_state_file_starts_empty(make, tmp_path):
    (tmp_path / "supervisor.json").write_text("{not json")
    sup = make()
    sup.restore()
    assert sup.status() == {}
