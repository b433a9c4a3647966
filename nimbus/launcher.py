"""The zipapp's full launcher: check the machine, find (or extract once) site-packages, run.

build.py puts this file into dist/nimbus.pyz as `_nimbus_launcher.py`, with BUILD_ID and
SUPPORTED filled in. The pyz's `__main__.py` is the much smaller nimbus/zipmain.py, which
handles a warm run by itself and calls this module's main() for everything else: the first
run of a build, a fallback directory, a machine nobody built for. Both replace shiv's own
launcher, which imports a lot (compileall, py_compile, zipfile, json, email...: ~20 ms) on
every run; only the first run of a build loads shiv's bootstrap (bundled in the pyz as
`_bootstrap`) to extract under its file lock.

Where the copy lives: $NIMBUS_CACHE, else $SHIV_ROOT, else ~/.shiv; when that cannot be
written (HOME read-only, as under systemd's ProtectHome=read-only, or missing) a per-user
directory nimbus-<uid> in $TMPDIR (else /var/tmp, else /tmp), which must be ours and
private (0700), is used instead.

This file must stay parseable by any Python 3 (no annotations, no f-strings, no future
imports): on an interpreter nobody built for it has to print one clear line, not crash.
"""

import os
import sys

BUILD_ID = "dev"  # filled in by build.py: shiv's hash of the bundled site-packages
# Extension-module suffixes the pyz has native code for (one per CPython version x arch).
SUPPORTED = ()  # filled in by build.py
SUPPORTED_TEXT = "Linux x86_64 or aarch64 with glibc 2.17+, CPython 3.9 to 3.14"  # by build.py
NATIVE_DIR = "_nimbus_native"
SITE_ZIP = "site-packages.zip"
MIN_GLIBC = (2, 17)
EXIT_UNSUPPORTED = 1


class CannotStart(Exception):
    """One line for the user: this machine is not supported, or there is nowhere to unpack."""


def describe_python():
    """'CPython 3.11.2' (what `nimbus version` shows too)."""
    impl = sys.implementation.name
    impl = {"cpython": "CPython", "pypy": "PyPy"}.get(impl, impl)
    return "%s %d.%d.%d" % (impl, *sys.version_info[:3])


def describe_platform():
    """'Linux aarch64, glibc 2.36' (what `nimbus version` shows too)."""
    if not hasattr(os, "uname"):
        return sys.platform
    return "%s %s, %s" % (os.uname().sysname, os.uname().machine, libc_name())


def describe_machine():
    return "%s on %s" % (describe_python(), describe_platform())


def libc_name():
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        value = None
    if value:
        return value
    return "not glibc (musl?)" if sys.platform.startswith("linux") else sys.platform


def glibc_version():
    """(major, minor) of glibc, or None on musl and non-Linux systems."""
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        return None
    name, _, version = value.partition(" ")
    if name != "glibc":
        return None
    try:
        return tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return None


def extension_suffix():
    """'.cpython-311-x86_64-linux-gnu.so': names Python version, machine and libc at once."""
    import importlib.machinery  # already imported by the zipapp's own start-up

    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return suffixes[0] if suffixes else ""


def check_machine(supported=None):
    """Raise CannotStart with one readable line unless this interpreter+machine was built for."""
    supported = SUPPORTED if supported is None else supported
    problem = None
    if sys.implementation.name != "cpython":
        problem = "only CPython is supported"
    elif sys.version_info < (3, 9):
        problem = "Python %d.%d is too old" % sys.version_info[:2]
    elif not sys.platform.startswith("linux"):
        problem = "only Linux is supported"
    else:
        glibc = glibc_version()
        if glibc is None:
            problem = "this Linux does not use glibc"
        elif glibc < MIN_GLIBC:
            problem = "glibc %d.%d is too old" % glibc
        elif supported and extension_suffix() not in supported:
            problem = "no native build for this Python version and machine"
    if problem:
        raise CannotStart("nimbus: %s; this is %s. nimbus.pyz runs on %s."
                          % (problem, describe_machine(), SUPPORTED_TEXT))


def native_dir(site_packages):
    return os.path.join(site_packages, NATIVE_DIR, os.uname().machine)


def _private_dir_ok(path):
    """A fallback dir in a shared /tmp must be ours, a real dir, and closed to others."""
    import stat

    st = os.lstat(path)
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & 0o077)


def cache_roots(environ=None):
    """Candidate extraction roots, best first: explicit setting, ~/.shiv, per-user temp dirs."""
    environ = os.environ if environ is None else environ
    explicit = environ.get("NIMBUS_CACHE") or environ.get("SHIV_ROOT")
    if explicit:
        return [os.path.abspath(os.path.expanduser(explicit))], True
    roots = []
    home = environ.get("HOME") or ""
    if home and home != "/":
        roots.append(os.path.join(home, ".shiv"))
    tmpdir = environ.get("TMPDIR")
    for tmp in [tmpdir] if tmpdir and os.path.isabs(tmpdir) else ["/var/tmp", "/tmp"]:
        roots.append(os.path.join(tmp, "nimbus-%d" % os.getuid()))
    return roots, False


def site_packages_in(root, build_id=None):
    return os.path.join(root, "nimbus_%s" % (build_id or BUILD_ID), "site-packages")


def _is_shared(root, explicit):
    """Fallback roots live in world-writable temp dirs: anyone could have made them first."""
    return not explicit and os.path.basename(root) == "nimbus-%d" % os.getuid()


def find_extracted(roots, explicit=False):
    for root in roots:
        site = site_packages_in(root)
        if os.path.isdir(site):
            if _is_shared(root, explicit) and not _private_dir_ok(root):
                continue  # not ours: never import code from it
            return site
    return None


def _writable_root(root, shared):
    """Create root if needed; True when we can extract into it."""
    try:
        if shared:
            os.makedirs(os.path.dirname(root), exist_ok=True)
            try:
                os.mkdir(root, 0o700)
            except FileExistsError:
                pass
            if not _private_dir_ok(root):
                return False
        else:
            os.makedirs(root, exist_ok=True)
        return os.access(root, os.W_OK | os.X_OK)
    except OSError:
        return False


def extract(roots, explicit, archive_path):
    """First run of this build: extract with shiv's bootstrap (file lock, temp dir, rename)."""
    failures = []
    for root in roots:
        if not _writable_root(root, _is_shared(root, explicit)):
            failures.append("%s (not writable)" % root)
            continue
        site = site_packages_in(root)
        try:
            _extract_into(archive_path, root, site)
        except OSError as exc:  # disk full, permissions below the root...
            failures.append("%s (%s)" % (root, exc.strerror or exc))
            continue
        return site
    raise CannotStart("nimbus: cannot unpack itself into %s; set NIMBUS_CACHE to a "
                      "directory this user can write" % ", ".join(failures))


def _extract_into(archive_path, root, site):
    """site-packages/ lives in one stored member, site-packages.zip (build.py: a small outer
    zip directory is cheaper to read at every start); shiv's extractor unpacks from it."""
    import shutil
    import zipfile
    from pathlib import Path

    from _bootstrap import extract_site_packages  # shiv's, bundled in the pyz

    copy = os.path.join(root, ".nimbus_%s.%d.zip" % (BUILD_ID, os.getpid()))
    try:
        with zipfile.ZipFile(archive_path) as outer:
            if SITE_ZIP not in outer.namelist():  # a plain shiv layout
                extract_site_packages(outer, Path(site).parent, compile_pyc=True)
                return
            with outer.open(SITE_ZIP) as src, open(copy, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        with zipfile.ZipFile(copy) as inner:
            extract_site_packages(inner, Path(site).parent, compile_pyc=True)
    finally:
        if os.path.exists(copy):
            os.unlink(copy)


def prepare(archive_path, environ=None):
    """Return the extracted site-packages for this build (extracting it on the first run)."""
    check_machine()
    roots, explicit = cache_roots(environ)
    site = find_extracted(roots, explicit)
    if site is None:
        site = extract(roots, explicit, archive_path)
    sys.path[0:0] = [native_dir(site), site]
    return site


def main():
    try:
        prepare(sys.argv[0])
    except CannotStart as exc:
        sys.stderr.write("%s\n" % exc)
        sys.exit(EXIT_UNSUPPORTED)
    from nimbus.__main__ import main as nimbus_main

    nimbus_main()


if __name__ == "__main__":
    main()
