"""Strict input (issue 9 item 3): JSON depth, node-reported strings, and a CLI that escapes."""

from __future__ import annotations

import json

import pytest

from nimbus import wire
from nimbus.errors import BadRequest
from tests.security.helpers import add_node, join, raw, store_doc

JSON = {"Content-Type": "application/json"}
HOSTILE_IPS = ["fe80::1%\x1b[2J", "fe80::1%eth0", "fe80::1%", "::ffff:1.2.3.4%x", "1.2.3.4\n",
               " 1.2.3.4", "1.2.3.4\x1b"]
HOSTILE_HOSTNAMES = ["evil\x1b[2J", "a_b", "-lead", "trail-", "a..b", "x" * 64, "a b", "ümlaut",
                     "name\n", "a." * 127 + "a", "\u202eexe.txt"]
HOSTILE_VERSIONS = ["1.0 beta", "v" * 65, "1.0\x1b[31m", "", "1.0\n", "\u00e91.0"]


def _deep(levels: int) -> bytes:
    return b'{"cpu":' * 1 + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


def test_ten_thousand_levels_of_json_are_a_400_not_a_500(server, ops):
    # Before: RecursionError escaped decode_json and the server answered 500.
    for body in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000):
        status, _, reply = raw(server, "POST", "/v1/iam/login", body, JSON)
        assert status == 400, reply
        assert "nested deeper than 32" in json.loads(reply)["error"]


def test_nesting_limit_is_thirty_two_levels():
    assert wire.decode_json(_deep(32)) is not None
    with pytest.raises(BadRequest, match="nested deeper than 32"):
        wire.decode_json(_deep(33))
    with pytest.raises(BadRequest, match="nested deeper than 32"):
        wire.decode_json(json.dumps({"a": [[[[{"b": [1] * 3}]]]] * 1, "c": 1}).encode()
                         .replace(b"[1, 1, 1]", b"[" * 30 + b"1" + b"]" * 30))


@pytest.mark.parametrize("ip", HOSTILE_IPS)
def test_ip_addresses_with_zone_ids_or_controls_are_refused(ip):
    with pytest.raises(BadRequest):
        wire.ip_address("ip_address", ip)


def test_wire_patterns_accept_ordinary_values():
    assert wire.ip_address("ip", "2001:DB8::1") == "2001:db8::1"
    assert wire.ip_address("ip", "192.0.2.1") == "192.0.2.1"
    assert wire.hostname("h", "node-1.example.com") == "node-1.example.com"
    assert wire.version("v", "0.1.0+g1234.dirty") == "0.1.0+g1234.dirty"
    assert wire.arch("a", "x86_64") == "x86_64"


@pytest.mark.parametrize("name", HOSTILE_HOSTNAMES)
def test_hostnames_must_be_rfc_1123(name):
    with pytest.raises(BadRequest):
        wire.hostname("hostname", name)


@pytest.mark.parametrize("version", HOSTILE_VERSIONS)
def test_versions_must_be_short_printable_ascii(version):
    with pytest.raises(BadRequest):
        wire.version("agent_version", version)


def test_a_node_cannot_store_terminal_escapes(server, ops, tmp_path):
    node, fields, _ = add_node(ops)
    joined = join(server, fields, tmp_path / "n1")
    client = joined.client(server)
    hostile = [{"ip_address": "fe80::1%\x1b[2J\x1b[H"}, {"hostname": "evil\x1b]0;pwned\x07"},
               {"agent_version": "0.1\x1b[31m"}, {"arch": "x86\x1b[0m"},
               {"hostname": "a" * 64 + ".example"}]
    for body in hostile:
        status, _, reply = raw(server, "POST", "/v1/internal/heartbeat",
                               json.dumps(body).encode(), JSON,
                               cert=(joined.cert_file, joined.key_file))
        assert status == 400, (body, reply)
    stored = store_doc(server, "nodes")[node["id"]]
    assert "\x1b" not in json.dumps(stored, ensure_ascii=False)
    assert client.request("POST", "/v1/internal/heartbeat", {"hostname": "ok-host"})
    status, _, _ = raw(server, "POST", "/v1/nodes", json.dumps(
        {"ip_address": "fe80::1%\x1b[2J"}).encode(), JSON)
    assert status in (400, 401)
    with pytest.raises(BadRequest):
        ops.request("POST", "/v1/nodes", {"ip_address": "fe80::1%eth0"})
    with pytest.raises(BadRequest):
        ops.request("POST", f"/v1/nodes/{node['id']}/ip", {"ip_address": "fe80::1%\x1b[2J"})


def test_cli_escapes_control_characters_whatever_the_server_sends(server, cli, admin):
    """Second line of defence: a store written before validation existed still prints safely."""
    node = cli.json("node", "add", "--get-token", "--ip", "192.0.2.7", "--name", "n7")["node"]
    server.stop()
    path = server.data_dir / "store" / "nodes.json"
    doc = json.loads(path.read_text())
    doc["data"][node["id"]].update(hostname="evil\x1b[2J\x1b[H", ip_address="fe80::1%\x1b]0;x\x07",
                                   agent_version="1\u202e0", name="n7\x1b[31m")
    path.write_text(json.dumps(doc))
    audit = server.data_dir / "audit.log"
    with audit.open("a") as f:
        f.write(json.dumps({"time": "2026-01-01T00:00:00Z", "ts": 2e9, "event": "x\x1b[2J",
                            "source": "\x1b[H\x9b31m"}) + "\n")
    server.start()
    for args in (("node", "list"), ("node", "describe", node["id"]), ("audit",)):
        out = cli.run(*args).stdout
        for bad in ("\x1b", "\x07", "\u202e", "\x9b"):
            assert bad not in out, (args, out)
    assert "\\x1b[2J" in cli.run("node", "list").stdout
