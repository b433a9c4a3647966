"""nimbus.seaweed.plan: every port on the overlay IP, no secret on argv, slots apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from nimbus.seaweed import plan

INST = plan.Instance("s3-0123456789abcdef", 0, "001", "10.9.0.2", ("10.9.0.2", "10.9.0.3"))
LAYOUT = plan.Layout(Path("/var/lib/nimbus/s3/s3-0123456789abcdef"))


def test_gateway_runs_all_four_and_other_nodes_a_volume_server():
    assert [p.role for p in plan.processes("weed", INST, "10.9.0.2", LAYOUT)] == \
        ["master", "volume", "filer", "s3"]
    assert [p.role for p in plan.processes("weed", INST, "10.9.0.3", LAYOUT)] == ["volume"]
    assert plan.processes("weed", INST, "10.9.0.9", LAYOUT) == []


def test_every_listener_is_bound_to_the_overlay_ip_and_telemetry_is_off():
    for ip in INST.node_ips:
        for proc in plan.processes("/usr/bin/weed", INST, ip, LAYOUT):
            assert f"-ip.bind={ip}" in proc.argv and f"-ip={ip}" in proc.argv
            assert proc.argv[:3] == ("/usr/bin/weed", "-logtostderr",
                                     f"-config_dir={LAYOUT.root}")
    master = plan.argv("weed", INST, "10.9.0.2", "master", LAYOUT)
    assert "-telemetry=false" in master and "-disableHttp" in master
    s3 = plan.argv("weed", INST, "10.9.0.2", "s3", LAYOUT)
    assert {"-port.iceberg=0", "-port.lance=0", "-port.https=0"} <= set(s3)
    assert f"-localSocket={LAYOUT.root}/s3.sock" in s3
    filer = plan.argv("weed", INST, "10.9.0.2", "filer", LAYOUT)
    assert f"-localSocket={LAYOUT.root}/filer.sock" in filer


def test_slots_keep_instances_apart_and_never_overlap_another_role():
    ports = [plan.port(r, s, g) for r in plan.BASE_PORTS for s in range(plan.MAX_SLOTS)
             for g in (False, True)]
    assert len(ports) == len(set(ports))
    assert plan.free_slot({0, 1, 3}) == 2
    with pytest.raises(ValueError):
        plan.free_slot(set(range(plan.MAX_SLOTS)))
    assert plan.endpoint("10.9.0.2", 1) == "http://10.9.0.2:8334"


def test_replication_needs_enough_nodes():
    assert plan.default_replication(1) == "000" and plan.default_replication(3) == "001"
    plan.check_replication("001", 2)
    with pytest.raises(ValueError, match="needs at least 2 nodes"):
        plan.check_replication("001", 1)
    with pytest.raises(ValueError, match="one of"):
        plan.check_replication("200", 3)


def test_security_toml_signs_volume_and_filer_and_admits_only_the_instance_cn():
    from nimbus.compat import tomllib

    keys = {k: f"key-{k}" for k in plan.SIGNING_KEYS}
    doc = tomllib.loads(plan.security_toml(keys, LAYOUT, "nimbus-s3-x"))
    assert doc["jwt"]["signing"]["key"] == "key-signing"
    assert doc["jwt"]["signing"]["read"]["key"] == "key-signing_read"
    assert doc["jwt"]["filer_signing"]["key"] == "key-filer_signing"
    assert doc["jwt"]["filer_signing"]["read"]["key"] == "key-filer_signing_read"
    for comp in ("master", "volume", "filer", "s3"):
        assert doc["grpc"][comp]["allowed_commonNames"] == "nimbus-s3-x"
        assert doc["grpc"][comp]["key"] == str(LAYOUT.key)
    assert doc["grpc"]["ca"] == str(LAYOUT.ca) and doc["grpc"]["client"]["cert"]
    with pytest.raises(ValueError, match="missing"):
        plan.security_toml({}, LAYOUT, "x")


def test_identities_have_no_anonymous_access():
    import json

    ids = json.loads(plan.identities_json("AK", "SK"))["identities"]
    assert [i["name"] for i in ids] == ["nimbus"]
    assert ids[0]["credentials"] == [{"accessKey": "AK", "secretKey": "SK"}]


def test_secrets_never_reach_argv():
    for ip in INST.node_ips:
        for proc in plan.processes("weed", INST, ip, LAYOUT):
            assert not any("key" in a.lower() and "=" in a for a in proc.argv)


def test_parse_version():
    assert plan.parse_version("version 8000GB 4.48 pypi linux amd64\n") == "4.48"
    assert plan.parse_version("version 30GB 3.80 abc linux arm64") == "3.80"
    assert plan.parse_version("command not found") is None
