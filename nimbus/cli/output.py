"""Printing API data as a table or as JSON (`-o table|json`)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

F = Callable[..., Any]


def output_option(fn: F) -> F:
    return click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]),
                        default="table", show_default=True, help="Output format.")(fn)


# SECURITY: C0/C1 controls, DEL, and bidi/zero-width format characters would let a
# hostile server or node repaint the terminal or forge table rows; they are printed escaped.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def safe(text: str) -> str:
    """text with every control or direction-changing character shown as an escape (\\x1b)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value > 1e9:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))  # ensure_ascii escapes controls
    return safe(str(value))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    grid = [[safe(c.upper()) for c in columns]] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in grid) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()
                     for row in grid)


def emit(data: Any, fmt: str, columns: Sequence[str] | None = None) -> None:
    """json prints exactly the response's data; table prints rows or key/value pairs."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if isinstance(data, list):
        cols = columns or (sorted(data[0]) if data else ["id"])
        click.echo(table(data, cols) if data else "(none)")
    elif isinstance(data, dict):
        keys = columns or list(data)
        width = max((len(k) for k in keys), default=0)
        for key in keys:
            click.echo(f"{safe(key).ljust(width)}  {cell(data.get(key))}")
    else:
        click.echo(cell(data))
