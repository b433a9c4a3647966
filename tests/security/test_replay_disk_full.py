"""A full disk never stops signed reads, and replay protection stays whole (issue 23 item 4).

The replay journal used to meet ENOSPC before the request was served: once its last page was
full, every signed request was a 500, reads included. Now a read is served with its nonce in
memory (the journal's "complete" marker is removed first, so a restart refuses what was signed
before it), a write gets 507 JSON, and the journal recovers when space comes back. The disk is a
small tmpfs (root)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Cli, Server, bootstrap_admin
from tests.integration.test_disk_full import _fill
from tests.security.helpers import operator, raw
from tests.security.test_hmac import signed

pytestmark = pytest.mark.root
BODY = json.dumps({"ip_address": "192.0.2.60"}).encode()
# One 4 KiB page of the journal holds 170 records: more signed reads than that must need a
# page the full disk does not have.
READS = 400



def _free(disk: Path) -> None:
    for name in ("filler", "filler2"):
        (disk / name).unlink(missing_ok=True)


def _full_disk_server(disk: Path, tmp_path: Path) -> tuple[Server, dict[str, Any], Any]:
    """A control plane on `disk` with an admin and its operator client, then the disk full."""
    (tmp_path / "cp").mkdir()
    server = Server(tmp_path / "cp", {"data_dir": str(disk / "data")})
    server.data_dir = disk / "data"
    server.start()
    try:
        admin = bootstrap_admin(server, Cli(tmp_path / "home"))
        ops = operator(server, admin)
    except BaseException:
        server.stop()
        raise
    _fill(disk)
    return server, admin, ops


def test_signed_reads_are_served_on_a_full_disk_and_writes_get_507(small_disk, tmp_path):
    server, admin, ops = _full_disk_server(small_disk, tmp_path)
    try:
        for _ in range(READS):  # before the fix: 500 from the journal's os.write
            assert ops.request("GET", "/v1/nodes") == []
        captured_read = signed(admin, "GET", "/v1/nodes")
        assert raw(server, "GET", "/v1/nodes", headers=captured_read)[0] == 200
        status, headers, reply = raw(server, "POST", "/v1/nodes", BODY,
                                     signed(admin, "POST", "/v1/nodes", BODY))
        assert status == 507 and headers["content-type"].startswith("application/json")
        assert "only reads are served" in json.loads(reply)["error"]
        assert not (small_disk / "data" / "replay" / "complete").exists()
        # The read's nonce is remembered in memory: replaying it now is refused.
        assert raw(server, "GET", "/v1/nodes", headers=captured_read)[0] == 401

        # kill -9 while the journal misses nonces, space back, start: the captured read
        # (accepted without a journal record) is refused, fresh requests work.
        server.kill()
        _free(small_disk)
        server.start()
        status, _, reply = raw(server, "GET", "/v1/nodes", headers=captured_read)
        assert status == 401 and b"restarted" in reply, reply
        time.sleep(1.1)  # timestamps have whole seconds: one signed after the start
        assert raw(server, "POST", "/v1/nodes", BODY,
                   signed(admin, "POST", "/v1/nodes", BODY))[0] == 201
        assert "Traceback" not in server.log()
        ops.close()
    finally:
        server.stop()


def test_the_journal_recovers_when_space_comes_back(small_disk, tmp_path):
    server, admin, ops = _full_disk_server(small_disk, tmp_path)
    try:
        for _ in range(READS):
            ops.request("GET", "/v1/nodes")
        captured_read = signed(admin, "GET", "/v1/nodes")
        assert raw(server, "GET", "/v1/nodes", headers=captured_read)[0] == 200
        _free(small_disk)
        # The first signed request after the space is back journals what was missed.
        assert raw(server, "POST", "/v1/nodes", BODY,
                   signed(admin, "POST", "/v1/nodes", BODY))[0] == 201
        assert (small_disk / "data" / "replay" / "complete").exists()
        # A plain restart now keeps the missed read's nonce: refused as a replay.
        assert server.stop() == 0
        server.start()
        status, _, reply = raw(server, "GET", "/v1/nodes", headers=captured_read)
        assert status == 401 and b"replay" in reply, reply
        ops.close()
    finally:
        server.stop()
