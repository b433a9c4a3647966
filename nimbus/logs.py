"""Logging setup and masking of secrets for log lines."""

from __future__ import annotations

import logging
import sys


def setup(level: str = "info", stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("nimbus")
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False


def mask(value: str, keep: int = 6) -> str:
    """SECURITY: show only a short prefix of an identifier or key, never the whole value."""
    if not value:
        return ""
    return value[:keep] + "…"
