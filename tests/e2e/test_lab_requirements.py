"""`nimbus lab` refuses clearly when it cannot work: not root, tools or WireGuard missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from nimbus.errors import NotFound
from nimbus.lab.orchestrate import LabError, check_requirements, resolve_id


def tools(*missing: str):
    return lambda name: None if name in missing else f"/usr/bin/{name}"


def test_lab_needs_root(tmp_path: Path):
    with pytest.raises(LabError, match="needs root"):
        check_requirements(euid=1000, which=tools())


@pytest.mark.parametrize(("tool", "package"), [("ip", "iproute2"), ("wg", "wireguard-tools")])
def test_lab_names_the_missing_tool_and_its_package(tool: str, package: str, tmp_path: Path):
    with pytest.raises(LabError, match=f"`{tool}`: install {package}"):
        check_requirements(euid=0, which=tools(tool), kernel_module=tmp_path / "none")


def test_lab_without_kernel_module_needs_wireguard_go(tmp_path: Path):
    with pytest.raises(LabError, match="no kernel WireGuard module and no wireguard-go"):
        check_requirements(euid=0, which=tools("wireguard-go"),
                           kernel_module=tmp_path / "none")


def test_wireguard_go_needs_dev_net_tun(tmp_path: Path):
    with pytest.raises(LabError, match="/dev/net/tun"):
        check_requirements(euid=0, which=tools(), kernel_module=tmp_path / "none",
                           tun=tmp_path / "tun")


def test_kernel_module_is_enough_without_wireguard_go(tmp_path: Path):
    check_requirements(euid=0, which=tools("wireguard-go"), kernel_module=tmp_path)


def test_commands_default_to_the_only_lab_and_refuse_to_guess(tmp_path: Path):
    roots = {"state_root": tmp_path / "run", "data_root": tmp_path / "lib"}
    with pytest.raises(NotFound, match="no lab is running"):
        resolve_id(None, _NoNamespaces(), **roots)
    (tmp_path / "lib" / "ab1").mkdir(parents=True)
    assert resolve_id(None, _NoNamespaces(), **roots) == "ab1"
    (tmp_path / "run" / "cd2").mkdir(parents=True)
    with pytest.raises(LabError, match="several labs exist"):
        resolve_id(None, _NoNamespaces(), **roots)
    assert resolve_id("cd2", _NoNamespaces(), **roots) == "cd2"
    with pytest.raises(NotFound, match="no lab 'zz9'"):
        resolve_id("zz9", _NoNamespaces(), **roots)


class _NoNamespaces:
    """A Runner stand-in for `ip netns list` that reports no namespaces."""

    def run(self, argv, **kw):  # type: ignore[no-untyped-def]
        import subprocess

        return subprocess.CompletedProcess(argv, 0, "", "")
