"""A full disk is a clean, safe state: 507 naming the disk, nothing half-applied or replayed
later, reads keep working, `serve` refuses to start on it; an audit log that cannot be written
never turns a committed write into an error. The disk is a small tmpfs (root)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from tests.harness import Cli, Server, bootstrap_admin
from tests.integration.test_auth import Raw


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    with contextlib.suppress(OSError), open(disk / "filler2", "wb") as f:  # the last blocks
        while True:
            f.write(b"\0" * 512)
            f.flush()
    return filler


def _one_line(result) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _usernames(cli: Cli) -> set[str]:
    return {u["username"] for u in cli.json("iam", "list-users")}


pytestmark = pytest.mark.root


def _on_disk(tmp_path: Path, disk: Path) -> Server:
    (tmp_path / "cp").mkdir()
    server = Server(tmp_path / "cp", {"data_dir": str(disk / "data")})
    server.data_dir = disk / "data"
    return server.start()


def test_full_disk_answers_507_applies_nothing_and_replays_nothing(small_disk, tmp_path):
    server = _on_disk(tmp_path, small_disk)
    cli = Cli(tmp_path / "home")
    try:
        admin = bootstrap_admin(server, cli)
        victim = cli.json("iam", "create-user", "--username", "victim")
        cli.json("iam", "create-key", "--user-id", victim["id"])
        _fill(small_disk)

        store_dir = small_disk / "data" / "store"
        created = cli.run("iam", "create-user", "--username", "late", check=False)
        assert created.returncode == 8
        assert _one_line(created) == (
            f"error: the disk holding {store_dir} is full (or its quota is used up); "
            "nothing was changed: free some space and retry")
        # A two-file commit (users + keys) that fails is rolled back, not replayed later.
        deleted = cli.run("iam", "delete-user", victim["id"], check=False)
        assert deleted.returncode == 8 and "is full" in _one_line(deleted)
        # The API itself: 507 with a JSON error.
        raw = Raw(server)
        body = json.dumps({"username": "raw"}).encode()
        status, _, doc = raw.send("POST", "/v1/iam/users", body,
                                  raw.signed(admin, "POST", "/v1/iam/users", body))
        assert status == 507 and "is full" in doc["error"]
        # Reads keep working while the disk is full.
        assert _usernames(cli) == {"admin", "victim"}
        assert cli.json("iam", "list-keys", "--user-id", victim["id"])

        # Space comes back: nothing that was reported as failed shows up, now or after a restart.
        for name in ("filler", "filler2"):
            (small_disk / name).unlink(missing_ok=True)
        assert _usernames(cli) == {"admin", "victim"}
        assert server.stop() == 0
        server.start()
        assert _usernames(cli) == {"admin", "victim"}
        assert cli.json("iam", "list-keys", "--user-id", victim["id"])
        assert not [p for p in store_dir.iterdir() if p.name.endswith(".tmp")]
        cli.json("iam", "create-user", "--username", "late")  # no 409: it never happened
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_serve_refuses_to_start_on_a_full_disk(small_disk, tmp_path):
    server = _on_disk(tmp_path, small_disk)
    assert server.stop() == 0
    _fill(small_disk)
    with pytest.raises(RuntimeError):
        server.start()
    assert server.proc is not None and server.proc.returncode == 8
    last = server.log().strip().splitlines()[-1]
    assert last.startswith("error: refusing to start: the disk holding ") and "full" in last
    assert "Traceback" not in server.log()
    (small_disk / "filler").unlink()
    (small_disk / "filler2").unlink(missing_ok=True)
    server.start()
    server.stop()


def test_an_audit_log_that_cannot_be_written_fails_the_request_before_the_commit(
        server: Server, cli: Cli, admin):
    audit = server.data_dir / "audit.log"
    audit.unlink()
    audit.mkdir()  # every append now fails (EISDIR), for root too
    try:
        failed = cli.run("iam", "create-user", "--username", "audited", check=False)
        assert failed.returncode != 0
        assert "audited" not in _usernames(cli), "a write whose audit record failed committed"
    finally:
        audit.rmdir()
    cli.json("iam", "create-user", "--username", "audited")  # a retry works: no 409
    events = [json.loads(line)["event"] for line in audit.read_text().splitlines()]
    assert events.count("user.created") == 1
