"""Standard-library features newer than Python 3.9, in one place (the pyz runs on 3.9+)."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by the 3.9/3.10 compat runs
    import tomli as tomllib

__all__ = ["tomllib"]
