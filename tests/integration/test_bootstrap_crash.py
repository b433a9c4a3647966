"""Bootstrap is restartable: killed (SIGKILL) before every file write or rename, a re-run yields
working credentials; once the operator has them, bootstrap is refused as before."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from nimbus.security.secretbox import SecretBox
from nimbus.store import Store
from nimbus.store.files import FAULT_ENV
from tests.harness import Cli, Server


def _credentials_work_offline(data_dir: Path, conn: dict) -> None:
    """The output's key is in the store, opens to its secret, and belongs to a confirmed admin."""
    store = Store(data_dir / "store")
    key = store.read("keys")[conn["access_key"]]
    box = SecretBox.from_file(data_dir / "store.key")
    assert box.open(key["secret"], conn["access_key"]) == conn["secret_key"]
    user = store.read("users")[key["user_id"]]
    assert user["admin"] and not user.get("bootstrap_pending")
    assert len(store.read("users")) == 1 and len(store.read("keys")) == 1
    assert conn["tls_ca"] == (data_dir / "ca.crt").read_text()


def test_local_bootstrap_killed_before_every_write_or_rename_can_be_rerun(tmp_path):
    cli = Cli(tmp_path / "home")
    crash_points = 0
    n = 0
    for n in range(1, 200):
        data, out = tmp_path / f"d{n}", tmp_path / f"conn{n}.json"
        args = ["bootstrap", "--data-dir", str(data), "--output", str(out)]
        crashed = cli.run(*args, check=False, env={FAULT_ENV: str(n)})
        if crashed.returncode == 0:
            break  # n is past the last write: every crash point was tried
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        crash_points += 1
        rerun = cli.run(*args, check=False)
        assert rerun.returncode == 0, f"crash point {n}: {rerun.stderr}"
        _credentials_work_offline(data, json.loads(out.read_text()))
        again = cli.run(*args, check=False)
        assert again.returncode == 5 and "already bootstrapped" in again.stderr, n
    assert crash_points >= 15, crash_points  # CA, keys, store, journal, output, confirm

    # The last crash point's control plane really serves with those credentials.
    (tmp_path / "srv").mkdir()
    server = Server(tmp_path / "srv", {"data_dir": str(data)})
    server.start()
    try:
        cli.run("configure", "--from", str(out), "--api-url", server.url)
        assert [u["username"] for u in cli.json("iam", "list-users")] == ["admin"]
    finally:
        server.stop()


def test_remote_bootstrap_whose_client_dies_before_saving_can_be_rerun(server: Server,
                                                                         cli: Cli, tmp_path):
    secret_file = server.data_dir / "bootstrap.secret"
    secret = secret_file.read_text()
    out = tmp_path / "remote.json"
    args = ["bootstrap", "--api-url", server.url, "--bootstrap-secret-file", "-",
            "--output", str(out)]
    # The reply arrived but the client died before writing it (its first file write).
    lost = cli.run(*args, check=False, input=secret, env={FAULT_ENV: "1"})
    assert lost.returncode == -signal.SIGKILL and not out.exists()
    assert secret_file.exists(), "the one-time secret must survive until the operator has a key"
    cli.run(*args, input=secret)
    cli.run("configure", "--from", str(out))
    assert [u["username"] for u in cli.json("iam", "list-users")] == ["admin"]
    assert not secret_file.exists()
    refused = cli.run(*args, check=False, input=secret)
    assert refused.returncode == 5 and "already bootstrapped" in refused.stderr
