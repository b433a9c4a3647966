# The pyz's __main__.py (build.py fills in B and S): the warm path only, kept tiny because
# Python compiles a zipapp's __main__ from source at every start (no pyc in the zip):
# the full launcher cost ~15 M instructions (~3 ms) to compile. Anything unusual (first run,
# fallback directory, unsupported machine) goes to the full launcher, _nimbus_launcher.
# Must parse on any Python 3: no annotations, no f-strings, no future imports.
import os
import sys

B = "dev"
S = ()


def _extracted():
    if sys.version_info < (3, 9) or sys.implementation.name != "cpython":
        return None
    import importlib.machinery

    if importlib.machinery.EXTENSION_SUFFIXES[0] not in S:
        return None
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    if libc.split(" ")[0] != "glibc":
        return None
    root = os.environ.get("NIMBUS_CACHE") or os.environ.get("SHIV_ROOT")
    if root:
        root = os.path.abspath(os.path.expanduser(root))
    else:
        home = os.environ.get("HOME")
        if not home or home == "/":
            return None
        root = os.path.join(home, ".shiv")
    site = os.path.join(root, "nimbus_" + B, "site-packages")
    return site if os.path.isdir(site) else None


if __name__ == "__main__":
    _site = _extracted()
    if _site is None:
        from _nimbus_launcher import main
    else:
        sys.path[0:0] = [os.path.join(_site, "_nimbus_native", os.uname().machine), _site]
        from nimbus.__main__ import main
    main()
