"""NFS volumes as data: names, folders, ganesha.conf rendering and Docker volume options."""

from __future__ import annotations

import pytest

from nimbus.nfs import ganesha, volumes
from nimbus.nfs.ganesha import Export, Paths

PATHS = Paths("/var/lib/nimbus/nfs")


@pytest.mark.parametrize("name", ["a", "data", "my-vol-2", "0", "a" * 63])
def test_good_names(name):
    assert volumes.check_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "A", "a_b", "a.b", "a/b", "a" * 64, "ä", " a",
                                  None, 3, "a\n"])
def test_bad_names(name):
    with pytest.raises(ValueError, match="volume name"):
        volumes.check_name(name)


@pytest.mark.parametrize("folder", ["/srv/data", "/mnt/usb disk/photos", "/home/pi/nfs",
                                    "/srv/data/", "/var/lib/nimbus/volumes/x", "/tmp/a+b@c"])
def test_good_folders(folder):
    assert volumes.check_folder(folder) == folder.rstrip("/")


@pytest.mark.parametrize("folder, why", [
    ("srv/data", "absolute"), ("", "absolute"), (None, "absolute"),
    ("/", "root directory"), ("/srv/../etc", "plain"), ("/srv/./x", "plain"),
    ("//srv", "plain"), ("/srv//x", "plain"), ("/etc", "system"), ("/etc/ganesha", "system"),
    ("/proc/1", "system"), ("/usr/local/x", "system"), ("/var/lib/docker/volumes", "system"),
    ('/srv/a"b', "only have"), ("/srv/a;b", "only have"), ("/srv/a\nb", "only have"),
    ("/srv/{x}", "only have"), ("/srv/a#b", "only have"), ("/srv/" + "x" * 1100, "only have"),
])
def test_bad_folders(folder, why):
    with pytest.raises(ValueError, match=why):
        volumes.check_folder(folder)


@pytest.mark.parametrize("folder, real", [
    ("/var/lib/nimbus", "/var/lib/nimbus"),          # the data dir itself
    ("/var/lib", "/var/lib"),                        # holds the data dir
    ("/var/lib/nimbus/store", "/var/lib/nimbus/store"),  # its inside
    ("/var/lib/nimbus/volumes", "/var/lib/nimbus/volumes"),  # all volumes at once
    ("/srv/link", "/var/lib/nimbus"),                 # a symlink to it
    ("/srv/link", "/etc"),                            # a symlink to a system dir
])
def test_the_agent_refuses_its_own_files(folder, real):
    with pytest.raises(ValueError):
        volumes.check_local_folder(folder, real, "/var/lib/nimbus")


def test_the_agent_accepts_the_default_and_outside_folders():
    default = volumes.default_folder("/var/lib/nimbus/", "data")
    assert default == "/var/lib/nimbus/volumes/data"
    assert volumes.check_local_folder(default, default, "/var/lib/nimbus") == default
    assert volumes.check_local_folder("/srv/x", "/mnt/y", "/var/lib/nimbus") == "/srv/x"


def test_docker_volume_options_are_an_nfs41_mount_of_the_export():
    assert volumes.docker_options("10.106.103.2", "/data") == {
        "type": "nfs", "o": "addr=10.106.103.2,nfsvers=4.1,rw,hard,noatime", "device": ":/data"}
    argv = volumes.docker_create_argv("data", "10.106.103.2", "/data")
    assert argv[:4] == ["volume", "create", "--driver", "local"]
    assert f"{volumes.LABEL}=data" in argv and argv[-1] == "nimbus-data"
    with pytest.raises(ValueError):
        volumes.docker_options("10.106.103.2,port=1", "/data")


def test_nfs_url():
    assert volumes.nfs_url("10.0.0.2", "/d", "f.txt") == "nfs://10.0.0.2/d/f.txt?version=4"
    assert volumes.nfs_url("10.0.0.2", "/d") == "nfs://10.0.0.2/d?version=4"


def test_render_binds_one_address_nfsv4_only_and_lists_the_clients():
    conf = ganesha.render("10.106.103.2", [
        Export(2, "b", "/srv/b", ("10.106.103.4", "10.106.103.3", "10.106.103.4")),
        Export(1, "a", "/srv/a", (), root_squash=False)], PATHS)
    assert "Bind_addr = 10.106.103.2;" in conf and "Protocols = 4;" in conf
    for off in ("Enable_NLM", "Enable_RQUOTA", "Enable_UDP"):
        assert f"{off} = false;" in conf
    assert 'RecoveryRoot = "/var/lib/nimbus/nfs/recovery";' in conf
    assert 'CCacheDir = "/var/lib/nimbus/nfs/krb5";' in conf
    a, b = conf.index("Export_Id = 1;"), conf.index("Export_Id = 2;")
    assert a < b  # sorted by id
    block_a, block_b = conf[a:b], conf[b:]
    assert "CLIENT {" not in block_a and "Squash = no_root_squash;" in block_a  # hidden
    assert "Clients = 10.106.103.3, 10.106.103.4;" in block_b  # sorted, once each
    assert "Squash = root_squash;" in block_b and 'Pseudo = "/b";' in block_b
    assert conf.count("{") == conf.count("}")


@pytest.mark.parametrize("exports, why", [
    ([Export(1, "a", "/srv/a"), Export(1, "b", "/srv/b")], "share id"),
    ([Export(1, "a", "/srv/a"), Export(2, "a", "/srv/b")], "twice"),
    ([Export(1, "a", "/srv/a"), Export(2, "b", "/srv/a/b")], "overlap"),
    ([Export(0, "a", "/srv/a")], "1-65535"),
    ([Export(70000, "a", "/srv/a")], "1-65535"),
    ([Export(1, "A", "/srv/a")], "volume name"),
    ([Export(1, "a", "/etc")], "system"),
    ([Export(1, "a", "/srv/a", ("10.0.0.1; Access_Type = RW",))], "does not appear"),
    ([Export(1, "a", "/srv/a", ("0.0.0.0/0",))], "does not appear"),
])
def test_render_refuses_what_would_drop_or_widen_an_export(exports, why):
    with pytest.raises(ValueError, match=why):
        ganesha.render("10.106.103.2", exports, PATHS)


def test_render_refuses_a_bad_bind_address_or_path():
    with pytest.raises(ValueError):
        ganesha.render("0.0.0.0; x", [], PATHS)
    with pytest.raises(ValueError):
        ganesha.render("10.0.0.1", [], Paths('/srv/"x'))


def test_argv_wipes_the_recovery_dir_and_passes_paths_as_parameters():
    argv = ganesha.argv(PATHS, "/usr/bin/ganesha.nfsd")
    assert argv[:2] == ["/bin/sh", "-c"] and "/var/lib/nimbus" not in argv[2]
    assert argv[4:] == ["/var/lib/nimbus/nfs/recovery", "/usr/bin/ganesha.nfsd",
                        "/var/lib/nimbus/nfs/ganesha.conf", "/var/lib/nimbus/nfs/ganesha.pid"]
    assert ganesha.env(PATHS) == {"BLKID_FILE": "/var/lib/nimbus/nfs/blkid.tab"}


def test_parse_version():
    assert ganesha.parse_version("NFS-Ganesha Release = V4.3\n") == "4.3"
    assert ganesha.parse_version("garbage") is None
