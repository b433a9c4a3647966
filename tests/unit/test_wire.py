"""Input validation (unknown fields, types, sizes), IDs and the join token format."""

from __future__ import annotations

import re

import pytest

from nimbus import wire
from nimbus.errors import BadRequest, PayloadTooLarge

SCHEMA = {
    "name": wire.Field(wire.string(10), required=True),
    "admin": wire.Field(wire.boolean),
    "count": wire.Field(wire.number(0, 5, integer=True)),
    "ratio": wire.Field(wire.number(0, 1)),
    "ip": wire.Field(wire.ip_address),
    "nested": wire.Field(wire.obj({"a": wire.Field(wire.string(3), required=True)})),
}


def test_valid_input_passes_and_absent_optionals_stay_absent():
    assert wire.validate({"name": "ada"}, SCHEMA) == {"name": "ada"}
    full = {"name": "ada", "admin": False, "count": 5, "ratio": 0.5, "ip": "10.0.0.1",
            "nested": {"a": "x"}}
    assert wire.validate(full, SCHEMA) == full


def test_ip_addresses_are_normalised():
    assert wire.validate({"name": "a", "ip": "2001:DB8::1"}, SCHEMA)["ip"] == "2001:db8::1"


def test_unknown_field_is_rejected():
    with pytest.raises(BadRequest, match="unknown field: zzz"):
        wire.validate({"name": "ada", "zzz": 1}, SCHEMA)
    with pytest.raises(BadRequest, match="unknown field: b"):
        wire.validate({"name": "ada", "nested": {"a": "x", "b": 1}}, SCHEMA)


def test_missing_required_field_is_rejected():
    with pytest.raises(BadRequest, match="missing field: name"):
        wire.validate({}, SCHEMA)


@pytest.mark.parametrize("body", [
    {"name": 5}, {"name": None}, {"name": ["a"]},
    {"name": "a", "admin": "true"}, {"name": "a", "admin": 1},
    {"name": "a", "count": 1.5}, {"name": "a", "count": True}, {"name": "a", "count": "1"},
    {"name": "a", "ratio": "0.5"}, {"name": "a", "ip": 10}, {"name": "a", "ip": "10.0.0.300"},
    {"name": "a", "ip": "example.com"}, {"name": "a", "nested": "x"},
])
def test_wrong_types_are_rejected(body):
    with pytest.raises(BadRequest):
        wire.validate(body, SCHEMA)


@pytest.mark.parametrize("body", [
    {"name": ""}, {"name": "x" * 11}, {"name": "a", "count": -1}, {"name": "a", "count": 6},
    {"name": "a", "ratio": 1.01}, {"name": "a", "nested": {"a": "abcd"}},
    {"name": "a\x00b"}, {"name": "tab\there"}, {"name": "a", "ip": "1" * 65},
])
def test_sizes_ranges_and_control_characters_are_rejected(body):
    with pytest.raises(BadRequest):
        wire.validate(body, SCHEMA)


def test_pattern_strings():
    check = wire.string(63, wire.NAME_RE)
    assert check("n", "web-1.a_b") == "web-1.a_b"
    for bad in ("-x", "a b", "a/b", "ä", ""):
        with pytest.raises(BadRequest):
            check("n", bad)


def test_body_must_be_an_object():
    for body in ([], "x", 1, None):
        with pytest.raises(BadRequest, match="must be a JSON object"):
            wire.validate(body, SCHEMA)


def test_decode_json():
    assert wire.decode_json(b"") == {}
    assert wire.decode_json(b'{"a": 1}') == {"a": 1}
    for bad in (b"{", b"\xff\xfe", b"{'a': 1}", b'{"a": 1,}'):
        with pytest.raises(BadRequest, match="not valid JSON"):
            wire.decode_json(bad)
    with pytest.raises(PayloadTooLarge):
        wire.decode_json(b" " * (wire.MAX_BODY + 1))


def test_ids():
    for kind in ("user", "node", "task", "key"):
        value = wire.new_id(kind)
        assert wire.check_id(kind, value) == value
    assert re.fullmatch(r"NBUS[0-9A-Z]{16}", wire.new_id("key"))
    assert wire.new_id("node") != wire.new_id("node")
    for kind, bad in (("user", "user-123"), ("node", "user-0123456789abcdef"),
                      ("key", "nbus0123456789ABCDEF"), ("user", "../etc/passwd"), ("user", 5)):
        with pytest.raises(BadRequest):
            wire.check_id(kind, bad)


def test_join_token_round_trip_and_corruption():
    fields = {k: f"v-{k}" for k in wire.JOIN_TOKEN_FIELDS}
    fields["node_id"] = "node-0123456789abcdef"
    fields["expires_at"] = 1_800_000_000
    token = wire.encode_join_token({**fields, "extra": "dropped"})
    assert token.startswith("nimbus-join-v1.") and "=" not in token
    assert wire.decode_join_token(f"  {token}\n") == fields
    for bad in ("nimbus-join-v2." + token[15:], token[:-8], "nimbus-join-v1.!!!",
                "nimbus-join-v1." + wire.b64url_encode(b'{"node_id": "node-0123456789abcdef"}'),
                "nimbus-join-v1." + "A" * 20000):
        with pytest.raises(BadRequest):
            wire.decode_join_token(bad)


def test_each_agent_request_shape_is_defined_once_and_documented_from_it():
    from nimbus.server.openapi import document

    paths = document()["paths"]
    for path, shape in (("/v1/nodes/join", wire.JOIN_REQUEST),
                        ("/v1/internal/heartbeat", wire.HEARTBEAT),
                        ("/v1/internal/tasks/{task_id}/result", wire.TASK_RESULT),
                        ("/v1/internal/renew", wire.RENEW_REQUEST)):
        documented = paths[path]["post"]["requestBody"]["content"]["application/json"]
        assert documented["schema"] == wire.json_schema(shape), path


def test_build_checks_a_body_as_the_server_will_and_leaves_out_none():
    assert wire.build(wire.TASK_RESULT, status="succeeded", output=None) == {
        "status": "succeeded"}
    with pytest.raises(BadRequest, match="status must be one of"):
        wire.build(wire.TASK_RESULT, status="done")
    with pytest.raises(BadRequest, match="hostname"):
        wire.build(wire.HEARTBEAT, hostname="bad host!")
