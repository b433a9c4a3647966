"""`nimbus audit`: security events from the control plane's audit log."""

from __future__ import annotations

import re
import time

from nimbus.cli import cmdline
from nimbus.cli.context import api
from nimbus.cli.output import emit, output_option
from nimbus.errors import BadRequest

DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_since(text: str | None, now: float) -> float:
    """Accepts 30m / 2h / 7d, an RFC 3339 UTC time, or epoch seconds."""
    if not text:
        return 0.0
    m = DURATION.match(text)
    if m:
        return now - int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    from nimbus.security.hmac_sign import parse_timestamp

    stamp = parse_timestamp(text)
    if stamp is not None:
        return stamp
    try:
        return float(text)
    except ValueError:
        raise BadRequest("--since takes 30m, 2h, 7d, 2026-11-26T21:37:17Z or epoch seconds") \
            from None


@cmdline.command()
@cmdline.option("--since", default=None, help="Only events after this (30m, 2h, RFC 3339, epoch).")
@output_option
@cmdline.pass_context
def audit(ctx: cmdline.Context, since: str | None, fmt: str) -> None:
    """Show security events (logins, keys, tokens, joins, certificates, deletions)."""
    start = parse_since(since, time.time())
    events = api(ctx).request("GET", f"/v1/audit?since={start:.3f}")
    if fmt == "json":
        emit(events, fmt)
        return
    rows = [{"time": e.get("time"), "event": e.get("event"),
             "details": " ".join(f"{k}={v}" for k, v in sorted(e.items())
                                 if k not in ("time", "ts", "event"))} for e in events]
    emit(rows, fmt, ["time", "event", "details"])
