"""The lab's ping matrix: every member pings every other overlay address from its namespace."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping

# (source member, destination member) -> reachable
Matrix = dict[tuple[str, str], bool]
MAX_PARALLEL = 24


def ping_argv(ip: str) -> list[str]:
    return ["ping", "-n", "-q", "-c", "1", "-W", "1", ip]


def _ping_round(pairs: list[tuple[str, str]], overlay: Mapping[str, str],
                wrap: Callable[[str, list[str]], list[str]]) -> Matrix:
    """One `ping -c1 -W1` per pair, at most MAX_PARALLEL at a time."""
    result: Matrix = {}
    running: list[tuple[tuple[str, str], subprocess.Popen[bytes]]] = []
    queue = list(pairs)
    while queue or running:
        while queue and len(running) < MAX_PARALLEL:
            src, dst = queue.pop(0)
            proc = subprocess.Popen(wrap(src, ping_argv(overlay[dst])),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            running.append(((src, dst), proc))
        pair, proc = running.pop(0)
        try:
            result[pair] = proc.wait(timeout=15) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            result[pair] = False
    return result


def ping_matrix(overlay: Mapping[str, str], wrap: Callable[[str, list[str]], list[str]],
                retry_for: float = 0.0) -> Matrix:
    """Ping every ordered pair of members; failed pairs are retried until `retry_for` s pass.

    `overlay` maps member -> overlay IP; `wrap(member, argv)` returns the argv that runs
    argv inside that member's namespace. Retries let a mesh that is still converging
    (handshakes, peer updates on their way) settle.
    """
    deadline = time.monotonic() + retry_for
    pairs = [(s, d) for s in overlay for d in overlay if s != d]
    matrix: Matrix = {}
    while True:
        matrix.update(_ping_round(pairs, overlay, wrap))
        pairs = [p for p in pairs if not matrix[p]]
        if not pairs or time.monotonic() >= deadline:
            return matrix
        time.sleep(0.5)


def format_matrix(members: list[str], matrix: Matrix) -> str:
    """A grid: rows are sources, columns destinations; 'ok', 'FAIL' or '-' (self)."""
    label = {m: m if m == "cp" else f"n{m}" for m in members}
    rows = [["from\\to", *(label[m] for m in members)]]
    for src in members:
        cells = ["-" if src == dst else ("ok" if matrix.get((src, dst)) else "FAIL")
                 for dst in members]
        rows.append([label[src], *cells])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in rows)
