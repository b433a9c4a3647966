"""Services: compose stacks deployed onto a swarm group by its manager.

A record (collection `services`, keyed by stack name — Docker's stack names are per swarm,
Nimbus keeps them unique across swarms so `service describe NAME` needs no --swarm):
    {name, swarm_id, compose, created_at, updated_at, services: [...], running, desired}
The compose dict is stored as given; the overlay MTU is added when it is deployed.
"""

from __future__ import annotations

from typing import Any

from nimbus.docker import compose as composefile
from nimbus.docker import plan
from nimbus.errors import BadRequest, Conflict, NotFound
from nimbus.server.state import State
from nimbus.server.swarm import groups as swarm
from nimbus.server.swarm import tasks as swarm_tasks

COLLECTION = "services"
INSPECT_TIMEOUT = 10.0


def check_name(name: str) -> str:
    try:
        return plan.check_stack_name(name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def check_compose(compose: Any) -> dict[str, Any]:
    try:
        return composefile.validate(compose)
    except ValueError as exc:
        raise BadRequest(f"compose file: {exc}") from None


def _get(state: State, name: str) -> dict[str, Any]:
    rec = state.store.read(COLLECTION).get(name)
    if rec is None:
        raise NotFound(f"no service {name[:64]!r}")
    return rec


def public(state: State, rec: dict[str, Any]) -> dict[str, Any]:
    s = state.store.read(swarm.COLLECTION).get(rec["swarm_id"]) or {}
    services = rec.get("services") or []
    return {"name": rec["name"], "swarm": s.get("name") or rec["swarm_id"],
            "swarm_id": rec["swarm_id"], "services": services, **plan.totals(services),
            "status": _status(services), "created_at": rec["created_at"],
            "updated_at": rec.get("updated_at")}


def _status(services: list[dict[str, Any]]) -> str:
    if not services:
        return "unknown"
    t = plan.totals(services)
    return "running" if t["running"] >= t["desired"] else "starting"


def list_services(state: State, swarm_ref: str | None = None) -> list[dict[str, Any]]:
    recs = state.store.read(COLLECTION).values()
    if swarm_ref:
        sid = swarm.find(state.store.read(swarm.COLLECTION), swarm_ref)["id"]
        recs = [r for r in recs if r["swarm_id"] == sid]
    return [public(state, r) for r in sorted(recs, key=lambda r: r["name"])]


def deploy(state: State, name: str, swarm_ref: str, compose: dict[str, Any],
           actor: str) -> dict[str, Any]:
    """Create or update the stack; the manager runs `docker stack deploy`."""
    check_name(name)
    check_compose(compose)
    s = swarm.find(state.store.read(swarm.COLLECTION), swarm_ref)
    if not s.get("manager"):
        raise Conflict(f"swarm {s['name']} has no nodes yet: swarm add-node first")
    now = round(state.now(), 3)
    with state.store.transaction(COLLECTION) as tx:
        old = tx[COLLECTION].get(name)
        if old is not None and old["swarm_id"] != s["id"]:
            raise Conflict(f"a service named {name} already runs on another swarm")
        tx[COLLECTION][name] = {**(old or {"created_at": now, "services": []}),
                                "name": name, "swarm_id": s["id"], "compose": compose,
                                "updated_at": now}
    out = swarm_tasks.run(state, s["manager"], swarm_tasks.STACK_DEPLOY, {"name": name})
    _record_services(state, name, out.get("services"))
    state.audit.record("service.deployed", state.now(), service=name, swarm_id=s["id"],
                       actor=actor)
    return public(state, _get(state, name))


def describe(state: State, name: str) -> dict[str, Any]:
    """The stack with replica counts from the manager (last known when it does not answer)."""
    rec = _get(state, check_name(name))
    s = state.store.read(swarm.COLLECTION).get(rec["swarm_id"]) or {}
    if s.get("manager"):
        try:
            out = swarm_tasks.run(state, s["manager"], swarm_tasks.INSPECT,
                                  {"swarm_id": s["id"], "stack": name}, INSPECT_TIMEOUT)
            _record_services(state, name, out.get("services"))
        except Conflict:
            pass
    return public(state, _get(state, name))


def remove(state: State, name: str, actor: str) -> dict[str, Any]:
    rec = _get(state, check_name(name))
    s = state.store.read(swarm.COLLECTION).get(rec["swarm_id"]) or {}
    if s.get("manager"):
        swarm_tasks.run(state, s["manager"], swarm_tasks.STACK_RM, {"name": name})
    with state.store.transaction(COLLECTION) as tx:
        tx[COLLECTION].pop(name, None)
    state.audit.record("service.removed", state.now(), service=name, actor=actor)
    return {"name": name, "removed": True}


def _record_services(state: State, name: str, services: Any) -> None:
    if not isinstance(services, list):
        return
    clean = [{"name": str(s.get("name", ""))[:128], "image": str(s.get("image", ""))[:256],
              "running": int(s.get("running", 0)), "desired": int(s.get("desired", 0))}
             for s in services if isinstance(s, dict)]
    with state.store.transaction(COLLECTION) as tx:
        if name in tx[COLLECTION]:
            tx[COLLECTION][name]["services"] = clean


def forget_swarm(recs: dict[str, Any], swarm_id: str) -> None:
    """Inside a transaction: drop the stacks of a deleted swarm (they went with it)."""
    for name in [n for n, r in recs.items() if r["swarm_id"] == swarm_id]:
        del recs[name]
