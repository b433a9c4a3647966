"""The audit log stays bounded under a flood (issue 9 item 7)."""

from __future__ import annotations

import http.client
import json
import time

from nimbus.client import tls_context
from nimbus.security.pki import make_csr
from nimbus.server.audit import AuditLog
from tests.security.helpers import add_node, join_body

JSON = {"Content-Type": "application/json"}


def _entries(server, event=None):
    lines = []
    for path in sorted(server.data_dir.glob("audit.log*")):
        if path.name.endswith(".lock"):
            continue
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in lines if event is None or e["event"] == event]


def _refused_joins(server, fields, count, source="127.0.0.1"):
    """count joins with a wrong secret on one kept-alive connection from source."""
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=60,
                                       context=tls_context(server.ca_pem()),
                                       source_address=(source, 0))
    body = json.dumps(join_body(fields, make_csr(fields["node_id"])[0],
                                secret="wrong" * 8)).encode()
    try:
        for _ in range(count):
            conn.request("POST", "/v1/nodes/join", body=body, headers=JSON)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 401
    finally:
        conn.close()


def test_a_flood_of_refused_joins_is_aggregated_per_source(server_factory, tmp_path):
    from tests.harness import Cli, bootstrap_admin
    from tests.security.helpers import operator

    # A long interval, so that however slow the machine, the flood fits in one.
    server = server_factory({"audit_aggregate_sec": 3600})
    ops = operator(server, bootstrap_admin(server, Cli(tmp_path / "home")))
    _, fields, _ = add_node(ops)
    _refused_joins(server, fields, 300)
    _refused_joins(server, fields, 3, source="127.0.0.2")
    refused = _entries(server, "join.refused")
    # Before: 303 lines. Now the first refusal of each source, the rest counted ...
    assert [e["source"] for e in refused] == ["127.0.0.1", "127.0.0.2"], refused
    server.stop()  # ... and written as one line per source at the latest at shutdown.
    refused = _entries(server, "join.refused")
    summary = {e["source"]: e for e in refused if e.get("aggregated")}
    assert summary["127.0.0.1"]["count"] == 299 and summary["127.0.0.2"]["count"] == 2
    assert summary["127.0.0.1"]["values"]["reason"] == {"unknown node or wrong secret": 299}
    assert len(refused) == 4


def test_the_aggregated_line_is_written_when_the_interval_ends(tmp_path):
    log = AuditLog(tmp_path / "audit.log", interval=0.2)
    for _ in range(5):
        log.record("login.failed", 1_800_000_000.0, source="192.0.2.9", user_id="user-1")
    deadline = time.monotonic() + 30
    while len(log.read()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    first, summary = log.read()
    assert "count" not in first and summary["count"] == 4 and summary["aggregated"] is True
    assert summary["values"] == {"user_id": {"user-1": 4}}


def test_the_log_rotates_at_its_size_cap_and_reads_across_files(tmp_path):
    log = AuditLog(tmp_path / "audit.log", max_bytes=4096, files=3, interval=0)
    for i in range(400):
        log.record("key.created", 1_800_000_000.0 + i, user_id=f"user-{i:016x}")
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all((tmp_path / f).stat().st_size <= 4096 for f in files)
    assert all((tmp_path / f).stat().st_mode & 0o777 == 0o600 for f in files)
    entries = log.read()
    numbers = [int(e["user_id"][5:], 16) for e in entries]
    assert numbers == list(range(numbers[0], 400)) and len(numbers) > 40
    recent = [e["ts"] for e in log.read(since=1_800_000_390.0)]
    assert recent == [1_800_000_390.0 + i for i in range(10)]


def test_nimbus_audit_reads_across_the_rotation(server, cli, admin):
    server.stop()
    old = {"time": "2026-01-01T00:00:00Z", "ts": 1_767_225_600.0, "event": "login.ok",
           "user_id": "user-00000000000000aa", "source": "192.0.2.1"}
    rotated = server.data_dir / "audit.log.1"
    rotated.write_text(json.dumps(old) + "\n")
    rotated.chmod(0o600)
    server.start()
    events = cli.json("audit")
    assert events[0]["user_id"] == "user-00000000000000aa"
    assert any(e["event"] == "bootstrap" for e in events[1:])
