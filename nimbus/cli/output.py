"""Printing API data as a table or as JSON (`-o table|json`)."""

from __future__ import annotations

import json
import time

import click

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    F = Callable[..., Any]



def output_option(fn: F) -> F:
    return click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]),
                        default="table", show_default=True, help="Output format.")(fn)


# SECURITY: C0/C1 controls, DEL, and bidi/zero-width format characters would let a
# hostile server or node repaint the terminal or forge table rows; they are printed escaped.
_UNSAFE = "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
_unsafe: Any = None


def safe(text: str) -> str:
    """text with every control or direction-changing character shown as an escape (\\x1b)."""
    if text.isprintable():  # none of _UNSAFE is printable: the common case needs no regex
        return text
    global _unsafe
    if _unsafe is None:
        import re

        _unsafe = re.compile(_UNSAFE)
    return _unsafe.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def cell(value: Any) -> str:
    return safe(_text(value))


def _text(value: Any) -> str:
    """value as shown in a table, not yet escaped."""
    if isinstance(value, str):
        return value
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value > 1e9:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))  # ensure_ascii escapes controls
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    grid = [[c.upper() for c in columns], *([_text(r.get(c)) for c in columns] for r in rows)]
    if not "".join("".join(row) for row in grid).isprintable():  # one scan, common case
        grid = [[safe(v) for v in row] for row in grid]
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
