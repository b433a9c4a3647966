"""Lab process records: destroy() must stop what it started, and only that."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from nimbus.lab.netns import LabNet, _same_process, _stop_processes
from nimbus.sysrun import Runner


def _wait_cmdline(pid: int, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
        assert time.monotonic() < deadline, f"process {pid} never became {text!r}"
        time.sleep(0.02)


@pytest.fixture
def net(tmp_path: Path) -> LabNet:
    return LabNet("t1ab", Runner(), state_root=tmp_path)


def test_a_record_made_before_an_exec_still_names_the_process_after_it(net: LabNet):
    # Like `ip netns exec NS sleep 300`: the recorded argv is the wrapper, the PID execs on.
    argv = ["sh", "-c", "sleep 0.3; exec sleep 300"]
    proc = subprocess.Popen(argv, start_new_session=True)
    try:
        net.record_process("cp:sleep", proc.pid, argv)
        rec = net.state["processes"][-1]
        assert rec["cmdline"] == "sh -c sleep 0.3; exec sleep 300"
        _wait_cmdline(proc.pid, "sleep 300")
        assert _same_process(rec)
        _stop_processes([rec])
        assert proc.wait(timeout=10) == -15
        assert not _same_process(rec)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_reused_pid_or_another_program_is_not_the_recorded_process(net: LabNet):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        net.record_process("cp:py", proc.pid, ["sleep", "300"])
        rec = dict(net.state["processes"][-1])
        assert not _same_process(rec)  # same PID, another command line
        rec["cmdline"] = " ".join(proc.args)
        assert _same_process(rec)
        assert not _same_process({**rec, "start": "1"})  # same PID, another start time
        _stop_processes([{**rec, "start": "1"}])
        assert proc.poll() is None  # never signalled
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_ignores_sigterm_is_killed(net: LabNet):
    argv = [sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(300)"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        net.record_process("cp:stubborn", proc.pid, argv)
        _stop_processes(net.state["processes"])
        assert proc.wait(timeout=10) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_process_that_already_exited_is_not_recorded(net: LabNet):
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(ValueError, match="not running"):
        net.record_process("cp:true", proc.pid, ["true"])
    assert net.state["processes"] == []
