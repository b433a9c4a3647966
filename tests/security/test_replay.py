"""Replay protection survives restarts, kill -9 and reboots (issue 9 item 2)."""

from __future__ import annotations

import json
import secrets
import time

import pytest

from nimbus.server.replay import NonceCache
from tests.security.helpers import raw, store_doc
from tests.security.test_hmac import signed

BODY = json.dumps({"ip_address": "192.0.2.44"}).encode()


@pytest.mark.parametrize("how", ["restart", "kill -9"])
def test_a_captured_signed_post_is_refused_after_a_restart(server, admin, how):
    headers = signed(admin, "POST", "/v1/nodes", BODY)
    status, _, reply = raw(server, "POST", "/v1/nodes", BODY, headers)
    assert status == 201, reply
    # Signed 200 s in the future (a client clock ahead): the boot time alone would not
    # cover it, the journal must.
    ahead = signed(admin, "POST", "/v1/nodes", BODY, now=time.time() + 200)
    assert raw(server, "POST", "/v1/nodes", BODY, ahead)[0] == 201
    if how == "restart":
        server.stop()
    else:
        server.kill()
    server.start()
    for captured in (headers, ahead):
        status, _, reply = raw(server, "POST", "/v1/nodes", BODY, captured)
        assert status == 401 and b"replay" in reply, reply
    assert len(store_doc(server, "nodes")) == 2  # no join token minted for the attacker
    fresh = signed(admin, "POST", "/v1/nodes", BODY)
    assert raw(server, "POST", "/v1/nodes", BODY, fresh)[0] == 201


def _cache(tmp_path, boot="boot-a", mono=None):
    clock = mono or [1000.0]
    cache = NonceCache(305, 300, tmp_path / "replay", monotonic=lambda: clock[0],
                       boot=lambda: boot)
    return cache, clock


def test_after_a_reboot_requests_signed_before_the_start_are_refused(tmp_path):
    now = 1_800_000_000.0
    cache, _ = _cache(tmp_path)
    cache.load(now)
    assert cache.not_before == 0.0  # first start: nothing could be replayed
    assert cache.first_use("K", "n1", now, now)
    cache.close()
    # Same boot: the journal is complete; a restart refuses only the seen nonce.
    again, _ = _cache(tmp_path)
    again.load(now + 5)
    assert again.not_before == 0.0 and not again.first_use("K", "n1", now + 5, now)
    assert again.first_use("K", "n2", now + 5, now + 1)
    again.close()
    # A reboot may have lost the unsynced tail: simulate the worst case (journal gone).
    for path in (tmp_path / "replay").glob("nonces.*"):
        path.unlink()
    rebooted, _ = _cache(tmp_path, boot="boot-b")
    rebooted.load(now + 60)
    assert rebooted.not_before == now + 60
    rebooted.close()


def test_journal_keeps_two_generations_and_memory_follows_the_monotonic_clock(tmp_path):
    cache, mono = _cache(tmp_path)
    wall = 1_800_000_000.0
    cache.load(wall)
    for i in range(100):
        assert cache.first_use("K", f"a{i}", wall, wall)
    # The wall clock steps back an hour: entries still leave memory on the monotonic clock.
    mono[0] += 700
    assert cache.first_use("K", "late", wall - 3600, wall - 3600)
    assert len(cache._seen) == 1
    for _ in range(4):  # several rotations: never more than two journal files
        mono[0] += 700
        cache.first_use("K", secrets.token_hex(16), wall, wall)
        assert len(list((tmp_path / "replay").glob("nonces.*"))) <= 2
    cache.close()


def test_journal_and_marker_are_private(server, admin):
    raw(server, "GET", "/v1/nodes", headers=signed(admin, "GET", "/v1/nodes"))
    directory = server.data_dir / "replay"
    assert directory.stat().st_mode & 0o777 == 0o700
    for path in directory.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
