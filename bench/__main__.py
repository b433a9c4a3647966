"""`python -m bench [--quick] [--only NAME …]`: run the benchmarks, print and save a table."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import Result, load_average

HERE = Path(__file__).resolve().parent
# name -> module with run(quick, log) -> list[Result]; in the order they run.
BENCHMARKS = {
    "store": "bench.store_load",
    "operator": "bench.operator_api",
    "cli": "bench.cli_latency",
    "heartbeat": "bench.heartbeat",
    "agent": "bench.agent",
    "hostile": "bench.hostile",
    "swarm": "bench.swarm",
    "s3": "bench.s3",
    "volumes": "bench.volumes",
}
# Root-only scenarios on a real lab that take minutes: run with --only NAME or a full run.
NOT_QUICK = {"swarm", "s3", "volumes"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def verdict(result: Result, quick: bool) -> str:
    if result.passed is None:
        return "info" if not quick or result.budget is None else "-"
    return "PASS" if result.passed else "FAIL"


def table(results: list[Result], quick: bool) -> list[list[str]]:
    rows = []
    for r in results:
        budget = "-" if r.budget is None else f"{r.op} {fmt(r.budget)} {r.unit}"
        rows.append([r.name, f"{fmt(r.figure)} {r.unit}", budget, verdict(r, quick)])
    return rows


def render_text(rows: list[list[str]]) -> str:
    head = ["benchmark", "figure", "budget", "result"]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def render_md(rows: list[list[str]], results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [f"# Benchmark results ({'quick' if meta['quick'] else 'full'} run)", "",
           f"{meta['when']} on {meta['host']} ({meta['cpus']} CPUs, Python {meta['python']}); "
           f"load average before {meta['load_before']}, after {meta['load_after']}."]
    out += [f"Re-run since: `--only {' '.join(u['only'])}` at {u['when']} (load average "
            f"{u['load_before']})." for u in meta.get("updated", [])]
    out += ["", "| benchmark | figure | budget | result |", "|---|---|---|---|"]
    out += [f"| {' | '.join(row)} |" for row in rows]
    notes = [f"* **{r['name']}**: {r['note']}" for r in results if r.get("note")]
    if notes:
        out += ["", "Notes:", "", *notes]
    out += ["", "Details (ramps, percentiles, store writes) are in `bench/results.json`.", ""]
    return "\n".join(out)


def merge_into_saved(meta: dict[str, Any], new: list[dict[str, Any]], only: list[str],
                     saved: Path = HERE / "results.json",
                     ) -> tuple[dict[str, Any], list[dict[str, Any]], list[list[str]]]:
    """The saved full run with the rows of this `--only` run replaced (matched by name) or
    added, so re-running one benchmark does not throw the others' figures away."""
    try:
        old = json.loads(saved.read_text())
    except (OSError, ValueError):
        old = None
    if not old or old["meta"].get("quick"):
        return meta, new, table([Result.from_dict(r) for r in new], False)
    fresh = {r["name"]: r for r in new}
    merged = [fresh.pop(r["name"], r) for r in old["results"]] + list(fresh.values())
    kept = dict(old["meta"])
    kept["updated"] = [*kept.get("updated", []),
                       {"when": meta["when"], "only": only, "load_before": meta["load_before"],
                        "load_after": meta["load_after"]}]
    return kept, merged, table([Result.from_dict(r) for r in merged], False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run (no thresholds), under about a minute")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results.*")
    args = parser.parse_args(argv)
    meta = {"quick": args.quick, "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_before": [round(x, 2) for x in load_average()]}
    results: list[Result] = []
    failures = []
    started = time.monotonic()
    names = args.only or [n for n in BENCHMARKS if not (args.quick and n in NOT_QUICK)]
    for name in names:
        log(f"== {name}")
        t0 = time.monotonic()
        try:
            results += importlib.import_module(BENCHMARKS[name]).run(args.quick, log)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the rest
            traceback.print_exc()
            failures.append(name)
            results.append(Result(f"{name}: did not run", None, "", None,
                                  note=f"{type(exc).__name__}: {str(exc)[:300]}"))
        log(f"   ({time.monotonic() - t0:.1f} s)")
    meta["load_after"] = [round(x, 2) for x in load_average()]
    meta["seconds"] = round(time.monotonic() - started, 1)
    rows = table(results, args.quick)
    print(render_text(rows))
    print(f"\nload average before {meta['load_before']}, after {meta['load_after']}; "
          f"{meta['seconds']} s")
    if not args.no_save:
        saved = [r.as_dict() for r in results]
        if args.only and not args.quick:  # a partial run updates its rows of the full table
            meta, saved, rows = merge_into_saved(meta, saved, args.only)
        (HERE / "results.json").write_text(json.dumps(
            {"meta": meta, "results": saved}, indent=1) + "\n")
        (HERE / "results.md").write_text(render_md(rows, saved, meta))
    if failures:
        return 2
    return 1 if (not args.quick and any(r.passed is False for r in results)) else 0


if __name__ == "__main__":
    sys.exit(main())
