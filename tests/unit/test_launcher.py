"""nimbus/launcher.py (the pyz's __main__): which machines it refuses, where it unpacks."""

from __future__ import annotations

import importlib.machinery
import os

import pytest

from nimbus import launcher

THIS = importlib.machinery.EXTENSION_SUFFIXES[0]
BUILT = (".cpython-39-x86_64-linux-gnu.so", ".cpython-311-aarch64-linux-gnu.so", THIS)


def test_this_machine_passes_when_built_for():
    launcher.check_machine(supported=BUILT)


@pytest.mark.parametrize(("suffix", "what"), [
    (".cpython-311-arm-linux-gnueabihf.so", "armv7 (32-bit Raspberry Pi OS)"),
    (".cpython-311-x86_64-linux-musl.so", "musl (Alpine)"),
    (".cpython-313t-x86_64-linux-gnu.so", "free-threaded CPython"),
    (".cpython-315-x86_64-linux-gnu.so", "a CPython newer than the build"),
])
def test_machines_nobody_built_for_get_one_line(monkeypatch, suffix, what):
    monkeypatch.setattr(importlib.machinery, "EXTENSION_SUFFIXES", [suffix, ".abi3.so", ".so"])
    with pytest.raises(launcher.CannotStart) as info:
        launcher.check_machine(supported=BUILT)
    message = str(info.value)
    assert "\n" not in message, what
    assert "no native build" in message
    assert "x86_64 or aarch64" in message and "CPython 3.9 to 3.14" in message


def test_musl_or_old_glibc_is_refused(monkeypatch):
    def no_glibc(name):
        raise ValueError("unrecognized configuration name")

    monkeypatch.setattr(os, "confstr", no_glibc)
    with pytest.raises(launcher.CannotStart, match="does not use glibc"):
        launcher.check_machine(supported=BUILT)
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.12")
    with pytest.raises(launcher.CannotStart, match=r"glibc 2\.12 is too old"):
        launcher.check_machine(supported=BUILT)


def test_describe_names_python_machine_and_libc():
    text = launcher.describe_machine()
    assert text.startswith("CPython 3.") and os.uname().machine in text and "glibc" in text


def test_cache_roots_explicit_wins_then_home_then_private_temp():
    roots, explicit = launcher.cache_roots({"NIMBUS_CACHE": "/srv/c", "SHIV_ROOT": "/x",
                                            "HOME": "/h"})
    assert (roots, explicit) == (["/srv/c"], True)
    assert launcher.cache_roots({"SHIV_ROOT": "/x"}) == (["/x"], True)
    uid = os.getuid()
    assert launcher.cache_roots({"HOME": "/h"}) == (
        ["/h/.shiv", f"/var/tmp/nimbus-{uid}", f"/tmp/nimbus-{uid}"], False)
    assert launcher.cache_roots({"TMPDIR": "/run/t"}) == ([f"/run/t/nimbus-{uid}"], False)


def test_an_extraction_in_a_shared_dir_that_is_not_ours_is_ignored(tmp_path):
    root = tmp_path / f"nimbus-{os.getuid()}"
    site = launcher.site_packages_in(str(root))
    os.makedirs(site)
    root.chmod(0o777)
    assert launcher.find_extracted([str(root)]) is None
    root.chmod(0o700)
    assert launcher.find_extracted([str(root)]) == site
    # An explicit NIMBUS_CACHE is the operator's choice: no ownership rules.
    root.chmod(0o777)
    assert launcher.find_extracted([str(root)], explicit=True) == site


def test_writable_root_makes_private_dirs_and_refuses_open_ones(tmp_path):
    mine = tmp_path / f"nimbus-{os.getuid()}"
    assert launcher._writable_root(str(mine), shared=True)
    assert mine.stat().st_mode & 0o777 == 0o700
    mine.chmod(0o755)
    assert not launcher._writable_root(str(mine), shared=True)
    (tmp_path / "file").write_text("")
    assert not launcher._writable_root(str(tmp_path / "file" / ".shiv"), shared=False)
