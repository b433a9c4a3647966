"""Benchmark 3: the cost of `dist/nimbus.pyz --help` and `node list` against a local server.

Budgets from issue 19 (the CLI on click), in instructions counted by callgrind (system
python3, warm pyz, one run each): `--help` <= 190 M, `node list` (100 nodes) <= 270 M —
about 45 / 60 ms on a machine whose `python3 -c pass` takes 8 ms. Instructions are exact,
load-independent and comparable across runs and machines of one architecture; wall time on
a shared VM swings with whatever else runs on it, so the wall medians (of 10, interleaved
with `python3 -c pass`, the floor no zipapp can go under) are reported beside them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.common import (
    PYZ,
    Result,
    admin_for,
    median,
    percentile,
    start_seeded_server,
    workdir,
)

RUNS = 10
BUDGETS_M = {"help": 190, "node list": 270}  # million instructions (callgrind)
SYSTEM_PYTHON = "/usr/bin/python3"


def _time(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, check=False)
    return time.perf_counter() - t0, proc


def instructions(argv: list[str], env: dict[str, str]) -> float | None:
    """Millions of instructions `argv` executes (user space, this process only), or None."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        proc = subprocess.run([valgrind, "--tool=callgrind", f"--callgrind-out-file={out}",
                               *argv], env=env, capture_output=True, check=False)
        if proc.returncode != 0 or not os.path.exists(out):
            return None
        with open(out) as f:
            m = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    return round(int(m.group(1)) / 1e6, 1) if m else None


def run(quick: bool, log: Any) -> list[Result]:
    runs = 5 if quick else RUNS
    if PYZ.exists():
        # The system interpreter, as on a node. (This box's pyenv python3 first on PATH also
        # runs a sandbox .pth that imports certifi: +20 ms that is not Nimbus's.)
        interp = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable
        base, what = [interp, str(PYZ)], "dist/nimbus.pyz"
    else:
        base, what = [sys.executable, "-m", "nimbus"], "python -m nimbus (no dist/nimbus.pyz)"
    with workdir("cli") as tmp:
        server = start_seeded_server(tmp, 100)
        try:
            cli, _ = admin_for(server, tmp)
            env = {**cli.env, "NIMBUS_CACHE": str(tmp / "cache")}
            # The harness points PYTHONPATH at the checkout; the zipapp must not see it.
            if PYZ.exists():
                env.pop("PYTHONPATH", None)
            cold, proc = _time([*base, "--help"], env)
            if proc.returncode != 0:
                raise RuntimeError(f"{what} --help failed: {proc.stderr.decode()[-300:]}")
            commands = {"python": [base[0], "-c", "pass"], "help": [*base, "--help"],
                        "node list": [*base, "node", "list"]}
            figures: dict[str, list[float]] = {name: [] for name in commands}
            for argv in commands.values():
                _time(argv, env)  # warm the page cache
            # Interleaved, so that a burst of load elsewhere hits all three alike.
            for _ in range(runs):
                for name, argv in commands.items():
                    wall, proc = _time(argv, env)
                    if proc.returncode != 0:
                        raise RuntimeError(f"{' '.join(argv)} failed: "
                                           f"{proc.stderr.decode()[-300:]}")
                    figures[name].append(wall)
            counted = {name: None if quick else instructions(argv, env)
                       for name, argv in commands.items()}
            for name, argv in commands.items():
                samples = figures[name]
                log(f"  {' '.join(argv[1:]) if name != 'python' else ' '.join(argv)}: "
                    f"median {median(samples) * 1000:.1f} ms, "
                    f"p90 {percentile(samples, 90) * 1000:.1f} ms"
                    + (f", {counted[name]} M instructions" if counted[name] else ""))
        finally:
            server.stop()
    interp = base[0]
    startup = median(figures["python"]) * 1000
    details = {"command": what, "interpreter": interp, "first_run_extract_s": round(cold, 3),
               **{k: [round(v, 4) for v in vals] for k, vals in figures.items()}}
    note = (f"{what} via {interp}; median of {runs}; the interpreter alone (`-c pass`) starts in "
            f"{startup:.1f} ms; first run (extraction) {cold * 1000:.0f} ms")
    counts = [Result(f"CLI instructions: {label} (callgrind)", counted[name], "M",
                     BUDGETS_M.get(name), "<=")
              for name, label in (("python", "`python3 -c pass`"), ("help", "`--help`"),
                                  ("node list", "`node list`")) if counted.get(name)]
    return [
        Result("CLI: python3 start-up alone, `-c pass` (median)", round(startup, 1), "ms", None),
        Result("CLI `nimbus --help` wall (median)", round(median(figures["help"]) * 1000, 1),
               "ms", None, details=details, note=note),
        Result("CLI `nimbus node list` wall, 100 nodes (median)",
               round(median(figures["node list"]) * 1000, 1), "ms", None),
        *counts,
    ]
