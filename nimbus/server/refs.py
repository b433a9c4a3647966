"""One lookup for every record a user names by id or by name (swarms, volumes, S3, …)."""

from __future__ import annotations

from typing import Any

from nimbus.errors import NotFound


def find(records: dict[str, Any], ref: str, noun: str) -> dict[str, Any]:
    """The record whose id or name is `ref`; NotFound naming the `noun` otherwise."""
    if ref in records:
        return records[ref]
    for record in records.values():
        if record.get("name") == ref:
            return record
    raise NotFound(f"no {noun} {ref[:64]!r}")
