"""Compose validation and the overlay MTU rewrite (nimbus.docker.compose)."""

from __future__ import annotations

import pytest

from nimbus.docker import compose

MTU = "com.docker.network.driver.mtu"


def test_default_network_gets_the_overlay_mtu_when_services_name_none():
    out = compose.with_overlay_mtu({"services": {"web": {"image": "busybox"}}})
    assert out["networks"] == {"default": {"driver_opts": {MTU: "1370"}}}
    assert out["version"] == "3.8"


def test_every_overlay_network_gets_the_mtu_unless_the_file_sets_its_own():
    src = {"version": 3.8, "services": {
        "web": {"image": "busybox", "networks": ["front", "back"]},
        "db": {"image": "busybox", "networks": ["back", "own", "outside", "bridged"]}},
        "networks": {"front": None, "back": {"driver": "overlay", "attachable": True,
                                             "driver_opts": {"encrypted": "true"}},
                     "own": {"driver_opts": {MTU: "1200"}},
                     "outside": {"external": True},
                     "bridged": {"driver": "bridge"}}}
    out = compose.with_overlay_mtu(src)
    nets = out["networks"]
    assert nets["front"] == {"driver_opts": {MTU: "1370"}}
    assert nets["back"]["driver_opts"] == {"encrypted": "true", MTU: "1370"}
    assert nets["back"]["attachable"] is True
    assert nets["own"]["driver_opts"][MTU] == "1200"
    assert nets["outside"] == {"external": True}
    assert nets["bridged"] == {"driver": "bridge"}
    assert "default" not in nets  # every service names its networks
    assert out["version"] == "3.8"
    assert src["networks"]["front"] is None  # the input is not changed


def test_a_default_network_the_file_defines_keeps_its_settings():
    src = {"services": {"web": {"image": "x", "networks": ["default"]}},
           "networks": {"default": {"driver_opts": {MTU: "1300"}}}}
    assert compose.with_overlay_mtu(src)["networks"]["default"]["driver_opts"][MTU] == "1300"


@pytest.mark.parametrize(("bad", "why"), [
    ([], "mapping"), ({}, "no services"), ({"services": {}}, "no services"),
    ({"services": {"web": "busybox"}}, "must be a mapping"),
    ({"services": {"web": {"build": "."}}}, "no image"),
    ({"version": "2.4", "services": {"web": {"image": "x"}}}, "not supported"),
    ({"services": {"web": {"image": "x"}}, "networks": ["a"]}, "networks"),
])
def test_invalid_compose_files_are_rejected_with_a_reason(bad, why):
    with pytest.raises(ValueError, match=why):
        compose.validate(bad)


def test_oversized_compose_files_are_rejected():
    big = {"services": {"web": {"image": "x", "environment": {"A": "x" * 300_000}}}}
    with pytest.raises(ValueError, match="larger than"):
        compose.validate(big)
