"""A stack's services and tasks as data (pure): from Engine API objects on the manager, and
checked again on the control plane, where whatever an agent reports is untrusted input.

The manager builds rows from `GET /services`, `/tasks` and `/nodes` (`summarize`,
`task_rows`); the control plane keeps only rows that pass `clean_*` — a hostile or broken
manager's non-numeric or absurd counts, long strings or wrong types are dropped or
clamped, never a 500.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

MAX_REPLICAS = 100  # per service, for `service scale`; a report above it is clamped
MAX_SERVICES = 64
MAX_TASKS = 300
TASK_STATES = ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready",
               "starting", "running", "complete", "shutdown", "failed", "rejected",
               "remove", "orphaned")


def stack_filter(stack: str) -> str:
    """`?filters=` for the objects of one stack (Docker labels them with its namespace)."""
    value = json.dumps({"label": [f"com.docker.stack.namespace={stack}"]})
    return "filters=" + urllib.parse.quote(value)


def _short(name: str, stack: str) -> str:
    return name[len(stack) + 1:] if name.startswith(f"{stack}_") else name


def _image(spec: Mapping[str, Any]) -> str:
    image = str(((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", ""))
    return image.split("@", 1)[0]  # Docker pins the digest; the operator wrote the tag


def _live(task: Mapping[str, Any]) -> bool:
    return task.get("DesiredState") == "running"


def summarize(services: Iterable[Mapping[str, Any]], tasks: Iterable[Mapping[str, Any]],
              stack: str) -> list[dict[str, Any]]:
    """[{name, image, mode, running, desired}] for `docker stack services`' columns."""
    tasks = list(tasks)
    out = []
    for svc in services:
        spec = svc.get("Spec") or {}
        mine = [t for t in tasks if t.get("ServiceID") == svc.get("ID")]
        replicated = (spec.get("Mode") or {}).get("Replicated")
        desired = (int(replicated.get("Replicas") or 0) if isinstance(replicated, dict)
                   else sum(1 for t in mine if _live(t)))
        running = sum(1 for t in mine if _live(t) and
                      (t.get("Status") or {}).get("State") == "running")
        out.append({"name": _short(str(spec.get("Name", "")), stack), "image": _image(spec),
                    "mode": "replicated" if isinstance(replicated, dict) else "global",
                    "running": running, "desired": desired})
    return sorted(out, key=lambda s: s["name"])


def task_rows(tasks: Iterable[Mapping[str, Any]], services: Iterable[Mapping[str, Any]],
              hostnames: Mapping[str, str], stack: str) -> list[dict[str, Any]]:
    """Every task like `docker stack ps`: live ones first, then the newest history."""
    names = {s.get("ID"): _short(str((s.get("Spec") or {}).get("Name", "")), stack)
             for s in services}
    rows = []
    for t in tasks:
        status = t.get("Status") or {}
        node_id = str(t.get("NodeID") or "")
        rows.append({"service": names.get(t.get("ServiceID"), ""),
                     "replica": t.get("Slot") or 0, "node": hostnames.get(node_id, ""),
                     "swarm_node_id": node_id, "desired": str(t.get("DesiredState", "")),
                     "state": str(status.get("State", "")),
                     "error": str(status.get("Err") or ""),
                     "since": str(status.get("Timestamp", "")), "id": str(t.get("ID", ""))})
    rows.sort(key=lambda r: r["since"], reverse=True)
    rows.sort(key=lambda r: (r["desired"] != "running", r["service"], r["replica"]))
    return rows[:MAX_TASKS]


def hostnames(nodes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {str(n.get("ID", "")): str((n.get("Description") or {}).get("Hostname", ""))
            for n in nodes}


# -- the control plane's side: reports are untrusted --------------------------------------

def clean_text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else ""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def count(value: Any, cap: int = 100_000) -> int:
    """A replica count as reported: a non-negative int (bools and strings are not), clamped."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(0, min(value, cap))


def clean_services(report: Any) -> list[dict[str, Any]] | None:
    """The services a manager reported, or None when the report is not a list."""
    if not isinstance(report, list):
        return None
    out = []
    for s in report[:MAX_SERVICES]:
        if not isinstance(s, dict):
            continue
        out.append({"name": clean_text(s.get("name"), 128),
                    "image": clean_text(s.get("image"), 256),
                    "mode": "global" if s.get("mode") == "global" else "replicated",
                    "running": count(s.get("running")), "desired": count(s.get("desired"))})
    return out


def clean_tasks(report: Any) -> list[dict[str, Any]] | None:
    if not isinstance(report, list):
        return None
    out = []
    for t in report[:MAX_TASKS]:
        if not isinstance(t, dict):
            continue
        out.append({"service": clean_text(t.get("service"), 128),
                    "replica": count(t.get("replica")),
                    "node": clean_text(t.get("node"), 128),
                    "swarm_node_id": clean_text(t.get("swarm_node_id"), 64),
                    "desired": _state(t.get("desired")), "state": _state(t.get("state")),
                    "error": clean_text(t.get("error"), 300),
                    "since": clean_text(t.get("since"), 40),
                    "id": clean_text(t.get("id"), 64)})
    return out


def _state(value: Any) -> str:
    return value if value in TASK_STATES else "unknown"


def clean_log_line(line: Any) -> dict[str, Any] | None:
    """One reported log line, or None; text keeps tabs, other control characters go."""
    if not isinstance(line, dict) or not isinstance(line.get("time"), str):
        return None
    text = line.get("text") if isinstance(line.get("text"), str) else ""
    text = "".join(c if c.isprintable() or c == "\t" else "?" for c in text[:8192])
    return {"time": clean_text(line["time"], 40), "service": clean_text(line.get("service"), 128),
            "replica": count(line.get("replica")), "node": clean_text(line.get("node"), 128),
            "swarm_node_id": clean_text(line.get("node_id"), 64),
            "task_id": clean_text(line.get("task_id"), 64),
            "stream": "stderr" if line.get("stream") == "stderr" else "stdout", "text": text}
