"""`nimbus audit`: security events from the control plane's audit log."""

from __future__ import annotations

import re
import time

import click

from nimbus.cli.context import api
from nimbus.cli.output import emit, output_option
from nimbus.errors import BadRequest

DURATION = re.compile(r"^(\d{1,12})([smhd])$")
LATEST = 253402300799.0  # 9999-12-31T23:59:59Z, the last time RFC 3339 can write
FORMS = "30m, 2h, 7d, 2026-11-26T21:37:17Z or epoch seconds"


def parse_since(text: str | None, now: float) -> float:
    """Accepts 30m / 2h / 7d, an RFC 3339 UTC time, or epoch seconds (0 to year 9999).

    A duration reaching back before 1970 means "everything" (0). nan, inf, 1e309, negative
    or later-than-9999 epochs are refused: they name no time.
    """
    if not text:
        return 0.0
    m = DURATION.match(text)
    if m:
        back = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return max(0.0, now - back)
    from nimbus.security.hmac_sign import parse_timestamp

    stamp = parse_timestamp(text)
    if stamp is not None:
        return stamp
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"expected {FORMS}, got {text!r}") from None
    if not 0.0 <= value <= LATEST:  # also false for nan; inf and 1e309 are above LATEST
        raise BadRequest(f"{text!r} is no time: epoch seconds go from 0 to {LATEST:.0f} "
                         "(year 9999)")
    return value


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> float:
    try:
        return parse_since(value, time.time())
    except BadRequest as exc:
        raise click.BadParameter(exc.message, ctx, param) from None


@click.command()
@click.option("--since", "start", default=None, callback=_since, metavar="WHEN",
              help=f"Only events after this: {FORMS}.")
@output_option
@click.pass_context
def audit(ctx: click.Context, start: float, fmt: str) -> None:
    """Show security events (logins, keys, tokens, joins, certificates, deletions)."""
    events = api(ctx).request("GET", f"/v1/audit?since={start:.3f}")
    if fmt == "json":
        emit(events, fmt)
        return
    rows = [{"time": e.get("time"), "event": e.get("event"),
             "details": " ".join(f"{k}={v}" for k, v in sorted(e.items())
                                 if k not in ("time", "ts", "event"))} for e in events]
    emit(rows, fmt, ["time", "event", "details"])
