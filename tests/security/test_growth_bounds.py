"""Nothing a user does grows the server without bound (issue 23 items 11 and 12).

Before: a non-admin could create thousands of API keys (each a rewrite of keys.json), and
every `GET /v1/audit` loaded the whole rotated history into memory (+300 MB per read of a
full log); `since=nan|inf|1e309` was accepted.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from nimbus.errors import BadRequest, Conflict
from nimbus.server.audit import AuditLog
from tests.security.helpers import operator, raw, store_doc

MAX_KEYS_PER_USER = 10  # docs/security.md


def _keys_of(server, user_id):
    return [k for k in store_doc(server, "keys").values() if k["user_id"] == user_id]


def test_a_user_holds_at_most_ten_api_keys(server, ops):
    user = ops.request("POST", "/v1/iam/users", {"username": "mallory"})
    key = ops.request("POST", f"/v1/iam/users/{user['id']}/keys", {})
    mallory = operator(server, key)
    for _ in range(MAX_KEYS_PER_USER - 1):
        mallory.request("POST", f"/v1/iam/users/{user['id']}/keys", {})
    with pytest.raises(Conflict, match="already has 10 API keys"):
        mallory.request("POST", f"/v1/iam/users/{user['id']}/keys", {})
    with pytest.raises(Conflict):  # an admin gets the same answer for that user
        ops.request("POST", f"/v1/iam/users/{user['id']}/keys", {})
    assert len(_keys_of(server, user["id"])) == MAX_KEYS_PER_USER
    spare = next(k for k in _keys_of(server, user["id"]) if k["access_key"] != key["access_key"])
    mallory.request("DELETE", f"/v1/iam/users/{user['id']}/keys/{spare['access_key']}")
    mallory.request("POST", f"/v1/iam/users/{user['id']}/keys", {})  # room again


def test_admins_are_capped_too(server, ops, admin):
    me = admin["user_id"] if "user_id" in admin else ops.request("GET", "/v1/iam/users")[0]["id"]
    have = len(_keys_of(server, me))
    for _ in range(MAX_KEYS_PER_USER - have):
        ops.request("POST", f"/v1/iam/users/{me}/keys", {})
    with pytest.raises(Conflict):
        ops.request("POST", f"/v1/iam/users/{me}/keys", {})


def _history(path: Path, files: int, per_file: int, start: float) -> list[dict]:
    """`files` audit files of `per_file` entries each, oldest in the highest number."""
    entries, ts = [], start
    for n in range(files - 1, -1, -1):
        lines = []
        for i in range(per_file):
            entry = {"ts": ts, "event": "key.created", "user_id": f"user-{i:016x}",
                     "pad": "x" * 150}
            entries.append(entry)
            lines.append(json.dumps(entry))
            ts += 1
        target = path if n == 0 else path.with_name(f"{path.name}.{n}")
        target.write_text("\n".join(lines) + "\n")
    return entries


def _peak(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_audit_read_costs_what_it_returns_not_the_whole_history(tmp_path):
    log = AuditLog(tmp_path / "audit.log", max_bytes=4 << 20, files=5, interval=60)
    entries = _history(log.path, 5, 20_000, 1_800_000_000.0)  # ~4 MB each, ~20 MB in all
    last, peak = _peak(lambda: log.read(limit=100))
    assert last == entries[-100:]
    assert peak < 2 << 20, f"reading 100 entries took {peak >> 20} MiB"
    since = entries[-50]["ts"]
    recent, peak = _peak(lambda: log.read(since=since))
    assert recent == entries[-50:]
    assert peak < 2 << 20, f"reading 50 recent entries took {peak >> 20} MiB"


def test_a_bounded_read_returns_exactly_what_a_full_read_would(tmp_path):
    log = AuditLog(tmp_path / "audit.log", files=3, interval=60)
    entries = _history(log.path, 3, 500, 1_800_000_000.0)
    # An aggregated line is written when its interval ends, after newer lines: its ts trails.
    late = {"ts": entries[-1]["ts"] - 30, "event": "login.failed", "aggregated": True}
    with log.path.open("a") as f:
        f.write("not json\n" + json.dumps(late) + "\n")
    everything = [*entries, late]
    for since, limit in [(0, 10_000), (0, 7), (entries[-40]["ts"], 10_000),
                         (entries[-40]["ts"], 5), (entries[700]["ts"], 10_000)]:
        want = [e for e in everything if e["ts"] >= since][-limit:]
        assert log.read(since, limit) == want, (since, limit)


def test_an_overlong_damaged_line_is_skipped_not_buffered(tmp_path):
    log = AuditLog(tmp_path / "audit.log", interval=0)
    log.path.write_bytes(b'{"ts": 1, "event": "a"}\n' + b"y" * (3 << 20) +
                         b'\n{"ts": 2, "event": "b"}\n')
    entries, peak = _peak(log.read)
    assert [e["event"] for e in entries] == ["a", "b"]
    assert peak < 3 << 20


@pytest.mark.parametrize("since", ["nan", "inf", "-inf", "1e309", "-1", "abc", "1e12",
                                   "0x10", ""])
def test_audit_since_must_be_a_finite_time(server, ops, since):
    with pytest.raises(BadRequest, match="since must be"):
        ops.request("GET", f"/v1/audit?since={since}")


def test_audit_since_accepts_times(server, ops):
    assert ops.request("GET", "/v1/audit?since=0")
    assert ops.request("GET", "/v1/audit?since=1800000000.5") == []
    assert raw(server, "GET", "/v1/audit?since=nan")[0] == 401  # still authenticated first
