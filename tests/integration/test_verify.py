"""Start-up verification: a missing or damaged file stops `serve` with one line; `doctor`."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.harness import Cli, Server


def _refused(server: Server) -> str:
    """Start the server, expect it to refuse; the last log line, checked for form."""
    with pytest.raises(RuntimeError):
        server.start()
    assert server.proc is not None and server.proc.returncode not in (0, None)
    log = server.log()
    assert "Traceback" not in log
    return log.strip().splitlines()[-1]


@pytest.fixture
def stopped(server, admin, cli):
    """A bootstrapped control plane with a node and a second user's key, then stopped."""
    cli.run("node", "add", "--get-token", "--ip", "192.0.2.7")
    user = cli.json("iam", "create-user", "--username", "ops")
    cli.json("iam", "create-key", "--user-id", user["id"])
    assert server.stop() == 0
    return server


@pytest.mark.parametrize("name", ["store/users.json", "store/keys.json", "store.key", "ca.crt",
                                  "ca.key", "jwt.key", "store/meta.json"])
def test_a_missing_file_stops_serve_naming_it_and_recreates_nothing(stopped, name):
    path = stopped.data_dir / name
    path.unlink()
    line = _refused(stopped)
    assert line.startswith("error: refusing to start:") and str(path) in line, line
    assert "restore" in line and "backup" in line
    assert not path.exists(), "serve re-created a file that held or protected data"
    assert not (stopped.data_dir / "bootstrap.secret").exists()


@pytest.mark.parametrize("name", ["store/nodes.json", "ca.key", "store/users.json",
                                  "store.key", "server.key"])
def test_a_truncated_file_stops_serve_naming_it(stopped, name):
    path = stopped.data_dir / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    line = _refused(stopped)
    assert str(path) in line, line
    path.write_bytes(data)
    stopped.start()


def test_a_store_file_of_another_schema_is_refused(stopped):
    path = stopped.data_dir / "store" / "users.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "schema": 99}))
    assert "has schema 99" in _refused(stopped)


def test_a_store_key_from_another_install_is_refused(stopped, tmp_path):
    (tmp_path / "other").mkdir()
    other = Server(tmp_path / "other").start()
    other.stop()
    (stopped.data_dir / "store.key").write_bytes((other.data_dir / "store.key").read_bytes())
    line = _refused(stopped)
    assert "store.key cannot open the API key secrets" in line


def test_doctor_reports_every_finding_and_exits_non_zero(stopped, cli: Cli):
    ok = cli.run("doctor", "--data-dir", str(stopped.data_dir))
    assert "intact" in ok.stdout
    (stopped.data_dir / "store" / "users.json").unlink()
    (stopped.data_dir / "jwt.key").write_text("")
    bad = cli.run("doctor", "--data-dir", str(stopped.data_dir), check=False)
    assert bad.returncode == 6
    problems = [line for line in bad.stdout.splitlines() if line.startswith("problem:")]
    assert len(problems) == 2, bad.stdout
    assert any("users.json is missing" in p for p in problems)
    assert any("jwt.key" in p and "empty" in p for p in problems)
    assert bad.stderr.strip() == f"error: 2 problem(s) in {stopped.data_dir}"


def test_doctor_on_a_new_dir_says_so(tmp_path, cli: Cli):
    (tmp_path / "new").mkdir()
    result = cli.run("doctor", "--data-dir", str(tmp_path / "new"))
    assert "no control plane yet" in result.stdout


def test_interrupted_first_start_is_finished_on_the_next(tmp_path):
    """Before the store exists nothing depends on the keys: a half-made CA is made again."""
    (tmp_path / "cp").mkdir()
    server = Server(tmp_path / "cp").start()
    server.stop()
    (server.data_dir / "store" / "meta.json").unlink()
    for name in ("ca.crt", "jwt.key"):
        (server.data_dir / name).unlink()
    import shutil

    shutil.rmtree(server.data_dir / "store")
    server.start()
    try:
        assert (server.data_dir / "ca.crt").exists()
    finally:
        server.stop()  # the test's second server must not outlive it


def test_temp_files_of_interrupted_writes_are_removed(stopped):
    leftovers = [stopped.data_dir / ".ca.key.999999.tmp",
                 stopped.data_dir / "store" / ".nodes.json.999999.w0a1b2c3d.tmp"]
    for path in leftovers:
        path.write_bytes(b"x" * 1_100_000)
    stopped.start()
    assert not any(p.exists() for p in leftovers)


def test_sigterm_during_start_up_stops_serve(tmp_path):
    """A signal while the server is still starting must not leave it running."""
    (tmp_path / "cp").mkdir()
    server = Server(tmp_path / "cp")
    from tests.harness import base_env, nimbus_argv

    proc = subprocess.Popen([*nimbus_argv(), "serve", "--config", str(server.config_path),
                             "--no-wireguard"], env=base_env(tmp_path / "home"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (server.data_dir / "ca.key").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
