"""Cached Debian root filesystems with just Python, for running the built pyz elsewhere.

One directory per suite+arch under /var/cache/nimbus-compat (or $NIMBUS_COMPAT_CACHE),
made with `debootstrap --foreign` (download and unpack only: no maintainer scripts, so the
same recipe works for a foreign architecture), then every downloaded .deb unpacked with
`dpkg-deb -x`: Python and its libraries need nothing configured to run. Built in a temp
dir next to the cache and renamed into place, under a lock, so a killed build never
leaves a half-made root behind and two runs never build the same root at once.

Run it directly to warm the cache: `python3 -m tests.compat.rootfs bookworm:arm64`.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("NIMBUS_COMPAT_CACHE", "/var/cache/nimbus-compat"))
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What the pyz needs from the system: the interpreter, its stdlib (ssl, ctypes, sqlite...).
PACKAGES = "python3"
RECIPE = 1  # bump to rebuild every cached root


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for url in re.findall(r"(?m)^(?:URIs:|deb)\s+(?:\[[^\]]*\]\s+)?(\S+)", text):
            if url.rstrip("/").endswith("/debian"):
                return url.rstrip("/")
    return DEFAULT_MIRROR


def root_path(suite: str, arch: str) -> Path:
    return CACHE / f"{suite}-{arch}-r{RECIPE}"


def ensure_rootfs(suite: str, arch: str, log=print) -> Path:
    """The cached root for suite/arch, built first if missing (needs root and the mirror)."""
    final = root_path(suite, arch)
    if (final / ".nimbus-compat-ok").exists():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".nimbus-compat-ok").exists():  # another run built it meanwhile
            return final
        started = time.monotonic()
        tmp = CACHE / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _build(suite, arch, tmp, log)
            shutil.rmtree(final, ignore_errors=True)  # a stale, unmarked leftover
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"rootfs {final.name}: built in {time.monotonic() - started:.0f} s")
    return final


def _build(suite: str, arch: str, tmp: Path, log) -> None:
    mirror = apt_mirror()
    log(f"rootfs {suite}/{arch}: debootstrap --foreign from {mirror}")
    subprocess.run(
        ["debootstrap", "--foreign", f"--arch={arch}", "--variant=minbase",
         f"--include={PACKAGES}", suite, str(tmp), mirror],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=1800)
    archives = tmp / "var" / "cache" / "apt" / "archives"
    for deb in sorted(archives.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, timeout=300)
        deb.unlink()
    # No maintainer scripts ran: give the root what they would have made and Python reads.
    passwd = tmp / "usr" / "share" / "base-passwd"
    for name in ("passwd", "group"):
        if (passwd / f"{name}.master").exists() and not (tmp / "etc" / name).exists():
            shutil.copy(passwd / f"{name}.master", tmp / "etc" / name)
    (tmp / "mnt").mkdir(exist_ok=True)  # where the chroot tests bind their work dir
    shutil.rmtree(tmp / "debootstrap", ignore_errors=True)
    (tmp / ".nimbus-compat-ok").write_text(f"{suite} {arch} recipe {RECIPE}\n")


def main(argv: list[str]) -> int:
    for spec in argv or ["bookworm:arm64", "bullseye:amd64"]:
        suite, arch = spec.split(":")
        print(ensure_rootfs(suite, arch))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
