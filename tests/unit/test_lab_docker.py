"""`nimbus lab --docker` planning: engine argv, socket paths, the busybox root filesystem."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from nimbus.lab import docker as labdocker


def test_dockerd_enters_only_the_network_namespace_and_isolates_the_rest(tmp_path: Path):
    argv = labdocker.dockerd_argv("nlab-ab12-1", "n1", tmp_path / "data", tmp_path / "x")
    assert argv[:2] == ["nsenter", "--net=/run/netns/nlab-ab12-1"]
    assert "ip" not in argv[:3]  # `ip netns exec` would remount /sys and hide the cgroups
    unshare = argv[2:argv.index("sh")]
    for flag in ("--uts", "--mount", "--pid", "--kill-child", "--mount-proc"):
        assert flag in unshare
    # The hostname is an argument ($0), never part of the script text.
    assert argv[argv.index("-c") + 1] == 'hostname "$0" && exec "$@"'
    assert argv[argv.index("-c") + 2] == "n1"
    d = argv[argv.index("dockerd"):]
    assert f"--data-root={tmp_path / 'data'}" in d
    assert f"--exec-root={tmp_path / 'x' / 'exec'}" in d
    assert f"--host=unix://{tmp_path / 'x' / 'docker.sock'}" in d
    for flag in ("--storage-driver=vfs", "--bridge=none", "--iptables=false"):
        assert flag in d


def test_docker_host_is_a_short_unix_socket_per_node():
    host = labdocker.docker_host(Path("/run/nimbus-lab"), "abcd1234", "240")
    assert host == "unix:///run/nimbus-lab/abcd1234/docker/n240/docker.sock"
    # containerd's socket lives below the exec root; unix socket paths must stay < 108 bytes.
    longest = labdocker.exec_root(Path("/run/nimbus-lab"), "abcd1234", "240")
    assert len(str(longest / "exec" / "containerd" / "containerd-debug.sock")) < 108


def test_rootfs_has_busybox_every_applet_and_a_writable_tmp(tmp_path: Path):
    fake = tmp_path / "busybox"
    fake.write_bytes(b"\x7fELF static busybox")
    raw = labdocker.rootfs_tar(fake, ["bin/sh", "usr/bin/wget", "sbin/ip", "usr/sbin/httpd"])
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("bin/busybox").read() == fake.read_bytes()
        assert tar.extractfile("etc/passwd").read().startswith(b"root:x:0:0:")
    assert members["bin/busybox"].mode == 0o755
    for applet in ("bin/sh", "usr/bin/wget", "sbin/ip", "usr/sbin/httpd"):
        assert members[applet].issym() and members[applet].linkname == "/bin/busybox"
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    for d in ("usr", "usr/bin", "usr/sbin", "sbin", "etc", "var/www"):
        assert members[d].isdir(), d
    names = list(members)
    assert names.index("usr") < names.index("usr/bin") < names.index("usr/bin/wget")


def test_missing_tools_name_the_package_to_install():
    with pytest.raises(labdocker.DockerLabError, match=r"install docker\.io"):
        labdocker.check_requirements(lambda tool: None if tool == "dockerd" else "/bin/x")
    with pytest.raises(labdocker.DockerLabError, match="busybox-static"):
        labdocker.check_requirements(lambda tool: None if tool == "busybox" else "/bin/x")
    labdocker.check_requirements(lambda tool: "/bin/" + tool)
