"""Write a file of any size over NFSv4 with libnfs itself (ctypes on libnfs.so.13).

Debian 12's `nfs-cp` (libnfs 4.0) cannot write 3,900 bytes or more over NFSv4: it
encodes each request into a 4 KiB buffer. `nfs_pwrite` in chunks of at most 3,900 bytes
works. Run inside a namespace: `ip netns exec NS python3 libnfs.py write URL SRC`, where URL
is `nfs://<ip>/<export>/<file>?version=4`; prints the bytes written and the seconds taken.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time

CHUNK = 3900
O_WRONLY, O_CREAT, O_TRUNC = os.O_WRONLY, os.O_CREAT, os.O_TRUNC


class NfsUrl(ctypes.Structure):
    _fields_ = [("server", ctypes.c_char_p), ("path", ctypes.c_char_p),
                ("file", ctypes.c_char_p)]


def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("nfs") or "libnfs.so.13")
    lib.nfs_init_context.restype = ctypes.c_void_p
    lib.nfs_get_error.restype = ctypes.c_char_p
    lib.nfs_get_error.argtypes = [ctypes.c_void_p]
    lib.nfs_parse_url_full.restype = ctypes.POINTER(NfsUrl)
    lib.nfs_parse_url_full.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nfs_mount.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.nfs_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                               ctypes.POINTER(ctypes.c_void_p)]
    lib.nfs_pwrite.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                               ctypes.c_uint64, ctypes.c_char_p]
    lib.nfs_close.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.nfs_destroy_url.argtypes = [ctypes.POINTER(NfsUrl)]
    lib.nfs_destroy_context.argtypes = [ctypes.c_void_p]
    return lib


def write(url: str, data: bytes) -> float:
    """Write data to the file at url (created or truncated); the seconds it took."""
    lib = _lib()
    ctx = lib.nfs_init_context()
    if not ctx:
        raise OSError("nfs_init_context failed")
    try:
        parsed = lib.nfs_parse_url_full(ctx, url.encode())
        if not parsed:
            raise OSError(f"bad URL: {lib.nfs_get_error(ctx).decode()}")
        u = parsed.contents
        start = time.perf_counter()
        if lib.nfs_mount(ctx, u.server, u.path) != 0:
            raise OSError(f"mount failed: {lib.nfs_get_error(ctx).decode()}")
        fh = ctypes.c_void_p()
        if lib.nfs_create(ctx, u.file, O_WRONLY | O_CREAT | O_TRUNC, 0o644,
                          ctypes.byref(fh)) != 0:
            raise OSError(f"create failed: {lib.nfs_get_error(ctx).decode()}")
        offset = 0
        while offset < len(data):
            chunk = data[offset:offset + CHUNK]
            n = lib.nfs_pwrite(ctx, fh, offset, len(chunk), chunk)
            if n <= 0:
                raise OSError(f"write at {offset} failed: {lib.nfs_get_error(ctx).decode()}")
            offset += n
        lib.nfs_close(ctx, fh)
        took = time.perf_counter() - start
        lib.nfs_destroy_url(parsed)
        return took
    finally:
        lib.nfs_destroy_context(ctx)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "write":
        print("usage: libnfs.py write URL SRC", file=sys.stderr)
        return 2
    with open(argv[2], "rb") as f:
        data = f.read()
    try:
        took = write(argv[1], data)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(data)} {took:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
