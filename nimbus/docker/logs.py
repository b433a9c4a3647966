"""Service logs from the Engine API, as data (pure): the query, the stream, the lines.

`GET /services/{id}/logs?timestamps=1&details=1` answers with Docker's multiplexed stream
(8-byte frame headers: stream 1 = stdout, 2 = stderr, then a big-endian length) whose
lines read `<RFC 3339 nano time> <k=v,… attributes> <message>`; the attributes name the
swarm task and node, which `lines()` turns into service, replica and node.
"""

from __future__ import annotations

import calendar
import json
import re
import struct
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

MAX_TAIL = 10000
DEFAULT_TAIL = 100
MAX_LINE = 8192  # characters of one message kept; longer ones are cut
_HEADER = struct.Struct(">BxxxL")
_TASK = "com.docker.swarm.task.id"
_NODE = "com.docker.swarm.node.id"


def query(tail: int | None, since: str | None, follow: bool) -> str:
    """The query string of a service logs call (both streams, times and task details)."""
    params = {"stdout": "1", "stderr": "1", "timestamps": "1", "details": "1",
              "follow": "1" if follow else "0"}
    if tail is not None:
        params["tail"] = str(max(0, min(int(tail), MAX_TAIL)))
    if since:
        params["since"] = since
    return urllib.parse.urlencode(params)


def demux(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete frames of a multiplexed stream -> ([(stream, payload)], unparsed rest).

    A stream that does not start like a frame (a service with a TTY) is one raw stdout."""
    frames: list[tuple[int, bytes]] = []
    i = 0
    while len(buf) - i >= _HEADER.size:
        if buf[i] not in (0, 1, 2) or buf[i + 1:i + 4] != b"\0\0\0":
            return [*frames, (1, buf[i:])], b""
        stream, size = _HEADER.unpack_from(buf, i)
        if len(buf) - i - _HEADER.size < size:
            break
        frames.append((stream or 1, buf[i + _HEADER.size:i + _HEADER.size + size]))
        i += _HEADER.size + size
    return frames, buf[i:]


def parse_line(raw: bytes, stream: int) -> dict[str, Any] | None:
    """One `time attrs message` line -> {time, task_id, node_id, stream, text}."""
    text = raw.decode("utf-8", errors="replace").rstrip("\n")
    stamp, _, rest = text.partition(" ")
    if not stamp[:4].isdigit():
        return None
    attrs_text, _, message = rest.partition(" ")
    attrs = dict(urllib.parse.parse_qsl(attrs_text.replace(",", "&")))
    return {"time": stamp, "task_id": attrs.get(_TASK, ""), "node_id": attrs.get(_NODE, ""),
            "stream": "stderr" if stream == 2 else "stdout", "text": message[:MAX_LINE]}


def lines(frames: Iterable[tuple[int, bytes]]) -> list[dict[str, Any]]:
    """Frames (each may hold several lines) -> parsed lines in stream order."""
    out = []
    for stream, payload in frames:
        for raw in payload.splitlines():
            line = parse_line(raw, stream)
            if line is not None:
                out.append(line)
    return out


def label(lines_: list[dict[str, Any]], tasks: Mapping[str, Mapping[str, Any]],
          hostnames: Mapping[str, str], service: str) -> list[dict[str, Any]]:
    """Give each line its service, replica (task slot) and node hostname."""
    out = []
    for line in lines_:
        task = tasks.get(line["task_id"]) or {}
        out.append({"service": service, "replica": task.get("Slot") or 0,
                    "node": hostnames.get(line["node_id"], line["node_id"][:12]), **line})
    return out


def newest_within(items: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], bool]:
    """The items sorted by time, keeping the newest that fit in `budget` bytes of text;
    (kept, truncated)."""
    items = sorted(items, key=lambda x: x["time"])
    kept: list[dict[str, Any]] = []
    used = 2
    for item in reversed(items):
        used += len(json.dumps(item, sort_keys=True)) + 2
        if used > budget:
            return kept[::-1], True
        kept.append(item)
    return kept[::-1], False


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"^(?:\d+[smhd])+$")
_RFC3339_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")


def check_since(value: str) -> str:
    """ValueError unless value is a duration (10m, 1h30m), unix seconds or RFC 3339 UTC."""
    if not isinstance(value, str) or not (
            _DURATION_RE.match(value) or re.fullmatch(r"\d{1,12}(\.\d{1,9})?", value)
            or _RFC3339_RE.match(value)):
        raise ValueError("since must be a duration (30s, 10m, 2h, 1d), unix seconds or an "
                         "RFC 3339 UTC time (2026-12-03T09:28:20Z)")
    return value


def since_arg(value: str, now: float) -> str:
    """Docker's `since` (unix seconds.nanos) for a checked value, durations back from now."""
    check_since(value)
    if _DURATION_RE.match(value):
        secs = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", value))
        return f"{max(0.0, now - secs):.9f}"
    m = _RFC3339_RE.match(value)
    if m:
        secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
        return f"{secs}.{((m.group(2) or '') + '000000000')[:9]}"
    return value


def stamp_arg(stamp: str) -> str:
    """A line's own time (RFC 3339 nano) as a `since` that starts exactly there."""
    return since_arg(stamp if stamp.endswith("Z") else stamp + "Z", 0.0)
