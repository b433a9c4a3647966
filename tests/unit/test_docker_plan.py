"""Swarm planning and Docker output parsing (nimbus.docker.plan), no engine involved."""

from __future__ import annotations

import json

import pytest

from nimbus.docker import plan


def test_init_binds_every_swarm_port_to_the_overlay_address():
    argv = plan.init_argv("10.106.103.2/24")
    assert argv[:2] == ["swarm", "init"]
    assert argv[argv.index("--advertise-addr") + 1] == "10.106.103.2"
    assert argv[argv.index("--listen-addr") + 1] == "10.106.103.2:2377"
    assert argv[argv.index("--data-path-addr") + 1] == "10.106.103.2"


def test_join_request_carries_the_token_in_the_body_and_overlay_addresses():
    body = plan.join_request("10.106.103.3", "10.106.103.2", "SWMTKN-1-secret")
    assert body == {"ListenAddr": "10.106.103.3:2377", "AdvertiseAddr": "10.106.103.3",
                    "DataPathAddr": "10.106.103.3", "RemoteAddrs": ["10.106.103.2:2377"],
                    "JoinToken": "SWMTKN-1-secret"}


@pytest.mark.parametrize("bad", ["", "eth0", "10.0.0.300", "10.0.0.1; rm -rf /"])
def test_addresses_must_be_ip_addresses(bad: str):
    with pytest.raises(ValueError):
        plan.init_argv(bad)


def test_ingress_is_recreated_with_the_overlay_mtu():
    rm, create = plan.ingress_mtu_argv()
    assert rm == ["network", "rm", "ingress"]
    assert "--ingress" in create and create[-1] == "ingress"
    assert f"{plan.MTU_OPT}=1370" in create


@pytest.mark.parametrize("name", ["web", "my-stack_2", "a" * 63])
def test_stack_names_accepted(name: str):
    assert plan.stack_deploy_argv(name, "/tmp/f.json")[-1] == name


@pytest.mark.parametrize("name", ["", "-x", "Web", "a b", "../x", "a" * 64, "x;y"])
def test_stack_names_rejected(name: str):
    with pytest.raises(ValueError):
        plan.stack_rm_argv(name)


def test_node_ids_are_checked_before_they_reach_an_argv():
    good = "z8yudwu3x9t79f8whreslvh5q"
    assert plan.node_rm_argv(good) == ["node", "rm", "--force", good]
    assert plan.promote_argv(good) == ["node", "promote", good]
    with pytest.raises(ValueError):
        plan.node_rm_argv("--all")


def test_parse_info_of_a_manager_and_of_an_engine_without_swarm():
    manager = {"ServerVersion": "20.10.24", "Swarm": {
        "NodeID": "z8yudwu3x9t79f8whreslvh5q", "LocalNodeState": "active",
        "ControlAvailable": True, "Cluster": {"ID": "c1"},
        "RemoteManagers": [{"NodeID": "z8", "Addr": "10.106.103.2:2377"}]}}
    got = plan.parse_info("WARNING: x\n" + json.dumps(manager))
    assert got == {"version": "20.10.24", "swarm_state": "active",
                   "swarm_node_id": "z8yudwu3x9t79f8whreslvh5q", "swarm_id": "c1",
                   "manager": True, "manager_addrs": ["10.106.103.2:2377"]}
    alone = plan.parse_info(json.dumps({"ServerVersion": "28.0", "Swarm": {
        "NodeID": "", "LocalNodeState": "inactive"}}))
    assert (alone["swarm_state"], alone["swarm_node_id"], alone["manager"]) == (
        "inactive", "", False)
    with pytest.raises(ValueError):
        plan.parse_info("Cannot connect to the Docker daemon")


def test_parse_nodes():
    text = "\n".join(json.dumps(n) for n in [
        {"Availability": "Active", "EngineVersion": "20.10.24", "Hostname": "n1",
         "ID": "a" * 25, "ManagerStatus": "Leader", "Status": "Ready"},
        {"Availability": "Drain", "EngineVersion": "20.10.24", "Hostname": "n2",
         "ID": "b" * 25, "ManagerStatus": "", "Status": "Down"}])
    n1, n2 = plan.parse_nodes(text)
    assert (n1["role"], n1["leader"], n1["state"], n1["availability"]) == (
        "manager", True, "ready", "active")
    assert (n2["role"], n2["state"], n2["availability"]) == ("worker", "down", "drain")


def test_totals():
    services = [{"name": "cache", "running": 1, "desired": 1},
                {"name": "web", "running": 2, "desired": 3}]
    assert plan.totals(services) == {"running": 3, "desired": 4}
