#!/usr/bin/env python3
"""Build dist/nimbus.pyz: one self-contained zipapp (shiv) with Nimbus and its runtime deps.

Usage: python3 build.py [--output PATH] [--force]

Needs only python3 (with the venv module) and access to PyPI. shiv lives in a private
build venv (build/venv) so nothing is installed system-wide. The runtime dependencies
from requirements.txt are installed once into build/deps and reused while
requirements.txt is unchanged; the nimbus package is copied fresh on every build.

Start-up choices (measured with `python3 dist/nimbus.pyz --help`):
* shiv extracts the site-packages once to ~/.shiv (or $SHIV_ROOT) and later runs import
  from plain files, so compression only costs at the first run; we keep it compressed to
  keep the file small for copying to every node.
* --compile-pyc byte-compiles at extraction time, so warm runs never compile or write
  __pycache__ (which also matters when the extraction dir is not writable).
* --reproducible: the same sources give the same bytes and the same build id, so a
  rebuild without changes does not force a new extraction on every machine.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent
BUILD = REPO / "build"
VENV = BUILD / "venv"
DEPS = BUILD / "deps"
STAGE = BUILD / "stage"
ENTRY_POINT = "nimbus.__main__:main"
SHEBANG = "/usr/bin/env python3"
SHIV_SPEC = "shiv>=1.0,<2"
# cffi ships one compiled module per Python version; cryptography needs it at run time.
# Bundling the binary for each newer CPython keeps the one pyz usable on all of them.
EXTRA_CFFI_PYTHONS = ("3.12", "3.13", "3.14")


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


def requirements_digest() -> str:
    text = (REPO / "requirements.txt").read_bytes()
    return hashlib.sha256(text + sys.version.encode()).hexdigest()


def ensure_deps(py: Path) -> Path:
    """Runtime dependencies in build/deps, reinstalled only when requirements.txt changes."""
    stamp = DEPS / ".requirements.sha256"
    digest = requirements_digest()
    if stamp.exists() and stamp.read_text() == digest:
        return DEPS
    shutil.rmtree(DEPS, ignore_errors=True)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    run([*pip, "--target", str(DEPS), "--only-binary=cryptography,cffi",
         "-r", str(REPO / "requirements.txt")])
    add_cffi_binaries(pip)
    # Console scripts of dependencies are useless inside the zipapp.
    shutil.rmtree(DEPS / "bin", ignore_errors=True)
    stamp.write_text(digest)
    return DEPS


def add_cffi_binaries(pip: list[str]) -> None:
    """Best effort: add _cffi_backend for newer CPythons next to the one pip installed."""
    installed = [p.name for p in DEPS.glob("cffi-*.dist-info")]
    if not installed:
        return
    version = installed[0][len("cffi-"):-len(".dist-info")]
    for pyver in EXTRA_CFFI_PYTHONS:
        if pyver == f"{sys.version_info.major}.{sys.version_info.minor}":
            continue
        tmp = BUILD / f"cffi-{pyver}"
        shutil.rmtree(tmp, ignore_errors=True)
        result = subprocess.run(
            [*pip, "--target", str(tmp), "--no-deps", "--only-binary=:all:",
             "--python-version", pyver, "--implementation", "cp", f"cffi=={version}"],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log(f"no cffi {version} wheel for Python {pyver}; the pyz will not run "
                f"crypto commands there")
            continue
        for so in tmp.glob("_cffi_backend.*.so"):
            shutil.copy2(so, DEPS / so.name)
        shutil.rmtree(tmp, ignore_errors=True)


def stage(deps: Path) -> Path:
    """deps + a clean copy of the nimbus package (no caches, no tests)."""
    shutil.rmtree(STAGE, ignore_errors=True)
    shutil.copytree(deps, STAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(REPO / "nimbus", STAGE / "nimbus",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return STAGE


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
    site = stage(ensure_deps(py))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    run([str(py), "-m", "shiv", "--site-packages", str(site), "-e", ENTRY_POINT,
         "-o", str(tmp), "-p", SHEBANG, "--compressed", "--compile-pyc", "--reproducible"],
        stdout=subprocess.DEVNULL)
    os.chmod(tmp, 0o755)  # noqa: S103 - the zipapp is an executable for everyone
    os.replace(tmp, output)  # a half-written pyz never replaces a working one
    shutil.rmtree(STAGE, ignore_errors=True)
    size = output.stat().st_size / 1e6
    log(f"built {output} ({size:.1f} MB) in {time.monotonic() - started:.1f} s")
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(REPO / "dist" / "nimbus.pyz"))
    parser.add_argument("--force", action="store_true",
                        help="reinstall the build venv and the runtime dependencies")
    args = parser.parse_args()
    if sys.version_info < (3, 11):  # noqa: UP036 - a clear message on an old python3
        sys.exit("build: Python 3.11 or newer is required")
    if args.force:
        shutil.rmtree(VENV, ignore_errors=True)
        shutil.rmtree(DEPS, ignore_errors=True)
    build(Path(args.output).resolve())


if __name__ == "__main__":
    main()
