#!/usr/bin/env python3
"""Build dist/nimbus.pyz: one zipapp for Linux x86_64 + aarch64 (glibc >= 2.17), CPython 3.9-3.14.

Usage: python3 build.py [--output PATH] [--force]

Needs python3 (3.9+, with the venv module) and access to PyPI; runs on any machine (it
never compiles: every wheel is downloaded for its target with `pip download --platform
... --only-binary=:all:`). shiv lives in a private build venv (build/venv), nothing is
installed system-wide.

What goes in (requirements-pyz.txt pins every version, so a build is reproducible):
* pure-Python packages once, at the site-packages root, with nimbus itself;
* cffi's Python part once, plus its compiled `_cffi_backend` for every CPython version and
  both machines side by side (each file name carries version and machine, so each
  interpreter imports only its own);
* cryptography's abi3 wheel (one binary serves CPython 3.9+) once per machine, under
  site-packages/_nimbus_native/<machine>/, which the launcher puts on sys.path.
The pyz's `__main__.py` is nimbus/launcher.py: it refuses machines nobody built for in one
line, and on warm runs adds the extracted site-packages to sys.path without loading shiv's
bootstrap (first runs still extract with it).

Start-up choices (measured with `python -m bench`, cli_latency):
* shiv extracts the site-packages once (see nimbus/launcher.py for where); later runs import
  from plain files, so compression only costs at the first run; we keep it compressed to keep
  the file small for copying to every node.
* pyc files are compiled at extraction time, so warm runs never compile or write __pycache__.
* reproducible: the same sources give the same bytes and the same build id, so a rebuild
  without changes does not force a new extraction on every machine.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent
BUILD = REPO / "build"
VENV = BUILD / "venv"
WHEELS = BUILD / "wheels"
STAGE = BUILD / "stage"
LOCK = REPO / "requirements-pyz.txt"
LAUNCHER = REPO / "nimbus" / "launcher.py"
ZIPMAIN = REPO / "nimbus" / "zipmain.py"
LAUNCHER_MEMBER = "_nimbus_launcher.py"  # the full launcher, beside the tiny __main__.py
ENTRY_POINT = "nimbus.__main__:main"
SHEBANG = "/usr/bin/env python3"
SHIV_SPEC = "shiv==1.0.8"
MACHINES = ("x86_64", "aarch64")
PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
PLATFORM = "manylinux2014_{machine}"  # = manylinux_2_17: glibc 2.17 and newer
NATIVE_DIR = "_nimbus_native"
SITE_ZIP = "site-packages.zip"  # the inner archive the launcher unpacks
SUPPORTED_TEXT = (f"Linux {' or '.join(MACHINES)} with glibc 2.17+, "
                  f"CPython {PYTHONS[0]} to {PYTHONS[-1]}")
SIZE_BUDGET_MB = 20.0


def log(msg: str) -> None:
    print(f"build: {msg}", flush=True)


def run(cmd: list[str], **kw: object) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_build_venv() -> Path:
    """A private venv with shiv (and pip) in build/venv, created on first use."""
    py = venv_python()
    if not py.exists():
        log(f"creating the build venv in {VENV}")
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except (OSError, subprocess.CalledProcessError) as exc:
            sys.exit(f"build: cannot create a venv ({exc}); on Debian: apt install python3-venv")
    probe = subprocess.run([str(py), "-c", "import shiv"], capture_output=True, check=False)
    if probe.returncode != 0:
        run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", SHIV_SPEC])
    return py


def pinned(name: str) -> str:
    """The `name==version` line of requirements-pyz.txt."""
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if re.split(r"[=<>!~; ]", line, maxsplit=1)[0].lower() == name:
            return line
    sys.exit(f"build: {name} is not pinned in {LOCK.name}")


def wheels_key() -> str:
    text = LOCK.read_bytes() + repr((MACHINES, PYTHONS, PLATFORM)).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def download_wheels(py: Path) -> Path:
    """Every wheel for every target in build/wheels/<key>, downloaded once per lock file."""
    dest = WHEELS / wheels_key()
    if (dest / ".complete").exists():
        return dest
    shutil.rmtree(WHEELS, ignore_errors=True)  # older locks: nothing reuses them
    tmp = WHEELS / ".download"
    tmp.mkdir(parents=True)
    pip = [str(py), "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
           "--only-binary=:all:", "--implementation", "cp", "-d", str(tmp)]
    cffi = pinned("cffi")
    for machine in MACHINES:
        platform = ["--platform", PLATFORM.format(machine=machine)]
        for pyver in PYTHONS:
            # cryptography excludes 3.9.0 and 3.9.1, which pip assumes for "3.9".
            target = ["--python-version", "3.9.2" if pyver == "3.9" else pyver]
            # The pure packages and the abi3 cryptography are the same for every version.
            what = ["-r", str(LOCK)] if pyver == PYTHONS[0] else [cffi]
            run([*pip, *platform, *target, *what])
    (tmp / ".complete").write_text(LOCK.read_text())
    tmp.rename(dest)
    return dest


def _wheel_tags(wheel: Path) -> tuple[str, str, str]:
    """(distribution, python tag, platform tag) of a wheel file name."""
    parts = wheel.name[:-len(".whl")].split("-")
    return parts[0].lower(), parts[-3], parts[-1]


def _unpack(wheel: Path, dest: Path, only: str | None = None) -> None:
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if only is not None and not re.fullmatch(only, info.filename):
                continue
            top, _, rest = info.filename.partition("/")
            if top.endswith(".data"):  # scripts/, data/, headers/ are not needed to import
                kind, _, rest = rest.partition("/")
                if kind not in ("purelib", "platlib") or not rest:
                    continue
                info.filename = rest
            z.extract(info, dest)


def stage(wheels: Path) -> tuple[Path, list[str]]:
    """The site-packages tree of the pyz; returns it and the extension suffixes it supports."""
    shutil.rmtree(STAGE, ignore_errors=True)
    STAGE.mkdir(parents=True)
    by_dist: dict[str, list[Path]] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        by_dist.setdefault(_wheel_tags(wheel)[0], []).append(wheel)
    for dist, found in sorted(by_dist.items()):
        if dist == "cryptography":
            for machine in MACHINES:
                abi3 = [w for w in found if _wheel_tags(w)[2].endswith(machine)]
                if len(abi3) != 1 or "abi3" not in abi3[0].name:
                    sys.exit(f"build: want one abi3 cryptography wheel for {machine}, "
                             f"got {[w.name for w in abi3]}")
                _unpack(abi3[0], STAGE / NATIVE_DIR / machine)
        elif dist == "cffi":
            _unpack(found[0], STAGE, only=r"cffi/.*|cffi-[^/]*\.dist-info/.*")
            for wheel in found:  # every _cffi_backend.cpython-3XX-<machine>-linux-gnu.so
                _unpack(wheel, STAGE, only=r"_cffi_backend\.[^/]*\.so")
        elif dist == "pyyaml":
            # PyYAML ships no pure wheel, but its `yaml` package is pure Python; without its
            # optional libyaml binding (_yaml) it falls back to the pure parser by itself.
            _unpack(found[0], STAGE, only=r"yaml/[^/]*\.py|(?i:pyyaml)-[^/]*\.dist-info/.*")
        else:
            if len(found) != 1 or not found[0].name.endswith("-none-any.whl"):
                sys.exit(f"build: {dist}: expected one pure-Python wheel, got "
                         f"{[w.name for w in found]}")
            _unpack(found[0], STAGE)
    suffixes = sorted(p.name[len("_cffi_backend"):] for p in STAGE.glob("_cffi_backend.*.so"))
    wanted = {f".cpython-{v.replace('.', '')}-{m}-linux-gnu.so" for v in PYTHONS
              for m in MACHINES}
    if set(suffixes) != wanted:
        sys.exit(f"build: cffi binaries missing for {sorted(wanted - set(suffixes))}")
    shutil.rmtree(STAGE / "bin", ignore_errors=True)  # console scripts are useless here
    shutil.copytree(REPO / "nimbus", STAGE / "nimbus",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return STAGE, suffixes


def _fill(path: Path, values: dict[str, object]) -> bytes:
    """A launcher source with this build's constants filled in."""
    text = path.read_text()
    for name, value in values.items():
        text, n = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value!r}", text, count=1)
        if n != 1:
            sys.exit(f"build: {path.name} has no `{name} = ...` line")
    compile(text, path.name, "exec")
    return text.encode()


def launcher_sources(build_id: str, suffixes: list[str]) -> dict[str, bytes]:
    """The pyz's __main__.py (warm path, nimbus/zipmain.py) and the full launcher."""
    return {
        "__main__.py": _fill(ZIPMAIN, {"B": build_id, "S": tuple(suffixes)}),
        LAUNCHER_MEMBER: _fill(LAUNCHER, {"BUILD_ID": build_id, "SUPPORTED": tuple(suffixes),
                                          "SUPPORTED_TEXT": SUPPORTED_TEXT}),
    }


def finish_pyz(pyz: Path, launchers: dict[str, bytes]) -> None:
    """Swap shiv's __main__.py for ours and move site-packages/ into one stored member.

    Python reads the whole zip directory at every start (zipimport, in Python code): with
    ~540 entries that was ~17 M instructions, ~3 ms of every command. The outer zip keeps
    only the launcher, shiv's bootstrap, environment.json and `site-packages.zip`; the
    launcher unpacks that inner zip on a build's first run.
    """
    tmp = pyz.with_name(pyz.name + ".main")
    inner = pyz.with_name(pyz.name + ".inner")
    with pyz.open("rb") as f:
        shebang = f.readline()
    with zipfile.ZipFile(pyz) as src:
        entries = src.infolist()
        with zipfile.ZipFile(inner, "w") as site:
            for info in entries:
                if info.filename.startswith("site-packages/"):
                    site.writestr(info, src.read(info))
        stamp = next(i for i in entries if i.filename == "environment.json").date_time
        with tmp.open("wb") as out:
            out.write(shebang)
            with zipfile.ZipFile(out, "w") as dst:
                for info in entries:
                    if info.filename.startswith("site-packages/"):
                        continue
                    data = launchers.get(info.filename) or src.read(info)
                    dst.writestr(info, data)
                    if info.filename == "__main__.py":
                        full = zipfile.ZipInfo(LAUNCHER_MEMBER, date_time=info.date_time)
                        full.compress_type = info.compress_type
                        full.external_attr = info.external_attr
                        dst.writestr(full, launchers[LAUNCHER_MEMBER])
                member = zipfile.ZipInfo(SITE_ZIP, date_time=stamp)
                member.compress_type = zipfile.ZIP_STORED  # already compressed inside
                member.external_attr = 0o644 << 16
                dst.writestr(member, inner.read_bytes())
    inner.unlink()
    os.replace(tmp, pyz)


def build(output: Path) -> Path:
    started = time.monotonic()
    BUILD.mkdir(exist_ok=True)
    # Two builds at once (tests of two checkouts of this tree) would share build/stage.
    lock = os.open(BUILD / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        return _build(output, started)
    finally:
        os.close(lock)


def _build(output: Path, started: float) -> Path:
    py = ensure_build_venv()
    site, suffixes = stage(download_wheels(py))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    run([str(py), "-m", "shiv", "--site-packages", str(site), "-e", ENTRY_POINT,
         "-o", str(tmp), "-p", SHEBANG, "--compressed", "--compile-pyc", "--reproducible"],
        stdout=subprocess.DEVNULL)
    with zipfile.ZipFile(tmp) as z:
        build_id = re.search(rb'"build_id": "([0-9a-f]+)"', z.read("environment.json"))
    if build_id is None:
        sys.exit("build: shiv wrote no build id")
    finish_pyz(tmp, launcher_sources(build_id.group(1).decode(), suffixes))
    os.chmod(tmp, 0o755)  # noqa: S103 - the zipapp is an executable for everyone
    os.replace(tmp, output)  # a half-written pyz never replaces a working one
    shutil.rmtree(STAGE, ignore_errors=True)
    size = output.stat().st_size / 1e6
    log(f"built {output} ({size:.1f} MB, budget {SIZE_BUDGET_MB:.0f} MB) for {SUPPORTED_TEXT} "
        f"in {time.monotonic() - started:.1f} s")
    if size > SIZE_BUDGET_MB:
        sys.exit(f"build: {output.name} is {size:.1f} MB, over the {SIZE_BUDGET_MB:.0f} MB budget")
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(REPO / "dist" / "nimbus.pyz"))
    parser.add_argument("--force", action="store_true",
                        help="recreate the build venv and download the wheels again")
    args = parser.parse_args()
    if sys.version_info < (3, 9):  # noqa: UP036 - a clear message on an old python3
        sys.exit("build: Python 3.9 or newer is required")
    if args.force:
        shutil.rmtree(VENV, ignore_errors=True)
        shutil.rmtree(WHEELS, ignore_errors=True)
    build(Path(args.output).resolve())


if __name__ == "__main__":
    main()
