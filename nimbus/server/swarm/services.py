"""Services: compose stacks deployed onto a swarm group by its manager.

A record (collection `services`, keyed by stack name — Docker's stack names are per swarm,
Nimbus keeps them unique across swarms so `service describe NAME` needs no --swarm):
    {name, swarm_id, compose, env (sealed), env_keys, replicas: {svc: n}, stopped,
     volumes: {compose volume: NFS volume}, created_at, updated_at, services: [...],
     tasks: [...], refreshed_at}
The compose dict is stored as the operator gave it. At delivery (`render_deploy`) it is
substituted with the stack's env, its mapped volumes declared as the external Docker
volumes `nimbus-NAME`, given the scaled or stopped replica counts, and the
overlay MTU is added on the manager. SECURITY: env values are sealed with the store key
(bound to the stack name), opened only into that delivered payload, and never logged,
audited (keys are) or echoed in an error.
"""

from __future__ import annotations

import json
from typing import Any

from nimbus.docker import compose as composefile
from nimbus.docker import envsubst, inspect, plan, replicas
from nimbus.errors import BadRequest, Conflict, Forbidden, NotFound
from nimbus.nfs import volumes as nfs_volumes
from nimbus.server import hooks, tasks
from nimbus.server.state import State
from nimbus.server.swarm import groups as swarm
from nimbus.server.swarm import tasks as swarm_tasks

COLLECTION = "services"


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


def check_env(env: Any) -> dict[str, str]:
    try:
        return envsubst.check_env(env)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def check_privileges(state: State, name: str, compose: dict[str, Any], allow: bool,
                     actor: str) -> list[str]:
    """Refuse a stack that reaches into its nodes (docker.compose.host_privileges) unless
    the admin said allow_privileged; an allowed one is audited with what it asked for."""
    findings = composefile.host_privileges(compose)
    if findings and not allow:
        state.audit.record("service.privileged_refused", state.now(), service=name,
                           actor=actor, findings=findings[:20])
        raise Forbidden(f"compose file: {'; '.join(findings)} - this gives containers the "
                        "node itself; deploy with --allow-privileged (allow_privileged: "
                        "true) to accept it")
    if findings:
        state.audit.record("service.privileged", state.now(), service=name, actor=actor,
                           findings=findings[:20])
    return findings


def check_volume_map(value: Any) -> dict[str, str]:
    """{compose volume: NFS volume name}, both names checked; BadRequest otherwise."""
    if not isinstance(value, dict) or len(value) > 32:
        raise BadRequest("volumes must be an object of at most 32 compose volume names")
    try:
        return {nfs_volumes.check_compose_volume(k): nfs_volumes.check_name(v)
                for k, v in value.items()}
    except ValueError as exc:
        raise BadRequest(f"volumes: {exc}") from None


def _map_volumes(state: State, swarm_id: str, compose: dict[str, Any],
                 volumes: dict[str, str]) -> dict[str, Any]:
    """Each NFS volume must be there for this swarm (asked of the volumes subsystem)."""
    for volume in volumes.values():
        hooks.query(state, "volume.docker_name", volume=volume, swarm_id=swarm_id)
    try:
        return nfs_volumes.map_compose_volumes(compose, volumes)
    except ValueError as exc:
        raise BadRequest(f"compose file: {exc}") from None


def get(state: State, name: str) -> dict[str, Any]:
    rec = state.store.read(COLLECTION).get(name)
    if rec is None:
        raise NotFound(f"no service {name[:64]!r}")
    return rec


def public(state: State, rec: dict[str, Any], with_tasks: bool = False) -> dict[str, Any]:
    s = state.store.read(swarm.COLLECTION).get(rec["swarm_id"]) or {}
    services = rec.get("services") or []
    out = {"name": rec["name"], "swarm": s.get("name") or rec["swarm_id"],
           "swarm_id": rec["swarm_id"], "services": services, **plan.totals(services),
           "status": "stopped" if rec.get("stopped") else _status(services),
           "env_keys": rec.get("env_keys") or [], "scaled": rec.get("replicas") or {},
           "volumes": rec.get("volumes") or {},
           "created_at": rec["created_at"], "updated_at": rec.get("updated_at"),
           "refreshed_at": rec.get("refreshed_at")}
    if with_tasks:
        out["tasks"] = _named_tasks(state, s, rec.get("tasks") or [])
    return out


def _named_tasks(state: State, s: dict[str, Any], rows: list[dict[str, Any]]) -> list[Any]:
    """Task rows with the Nimbus node name where the swarm node id is a known member."""
    all_nodes = state.store.read("nodes")
    names = {m.get("swarm_node_id"): (all_nodes.get(nid) or {}).get("name")
             for nid, m in (s.get("members") or {}).items()}
    return [{**r, "node": names.get(r.get("swarm_node_id")) or r.get("node")} for r in rows]


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


# -- env (SECURITY: sealed at rest) ---------------------------------------------------------

def _env_context(name: str) -> str:
    return f"service-env:{name}"


def open_env(state: State, rec: dict[str, Any] | None) -> dict[str, str]:
    sealed = (rec or {}).get("env")
    if not sealed:
        return {}
    return dict(json.loads(state.box.open(sealed, _env_context(rec["name"]))))  # type: ignore[index]


def _substituted(compose: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    try:
        return check_compose(envsubst.interpolate(compose, env))
    except envsubst.EnvError as exc:
        raise BadRequest(f"compose file: {exc}") from None


# -- operations ---------------------------------------------------------------------------

def deploy(state: State, name: str, swarm_ref: str, compose: dict[str, Any], actor: str,
           env: dict[str, str] | None = None, allow_privileged: bool = False,
           volumes: dict[str, str] | None = None) -> dict[str, Any]:
    """Create or update the stack; the manager runs `docker stack deploy`. New env values
    are merged over the stored ones; replica counts go back to the file's. `volumes` maps
    compose volumes onto NFS volumes of the swarm (the external Docker volume nimbus-NAME)."""
    check_name(name)
    check_compose(compose)
    s = swarm.find(state.store.read(swarm.COLLECTION), swarm_ref)
    old = state.store.read(COLLECTION).get(name)
    if old is not None and old["swarm_id"] != s["id"]:
        raise Conflict(f"a service named {name} already runs on another swarm")
    merged = {**open_env(state, old), **check_env(env or {})}
    # What the manager will get, so a ${VAR} cannot hide a host mount from the check.
    check_privileges(state, name, _substituted(compose, merged), allow_privileged, actor)
    volumes = dict(volumes or {})
    _map_volumes(state, s["id"], compose, volumes)
    manager = swarm.ready_manager(state, s)
    now = round(state.now(), 3)
    with state.store.transaction(COLLECTION) as tx:
        old = tx[COLLECTION].get(name)
        tx[COLLECTION][name] = {
            **(old or {"created_at": now, "services": []}), "name": name,
            "swarm_id": s["id"], "compose": compose, "replicas": {}, "stopped": False,
            "env": state.box.seal(json.dumps(merged), _env_context(name)) if merged else None,
            "env_keys": sorted(merged), "volumes": volumes, "updated_at": now}
    _apply(state, name, manager)
    state.audit.record("service.deployed", state.now(), service=name, swarm_id=s["id"],
                       env_keys=sorted(merged), actor=actor)
    return public(state, get(state, name))


def _apply(state: State, name: str, manager: str) -> None:
    """Run `docker stack deploy` of the record as it is now; record what the manager saw."""
    out = swarm_tasks.run(state, manager, swarm_tasks.STACK_DEPLOY, {"name": name})
    with state.store.transaction(COLLECTION) as tx:
        if name in tx[COLLECTION]:
            record_report(state, tx[COLLECTION][name], out)


def _change(state: State, name: str, change: dict[str, Any], event: str, actor: str,
            **audit: Any) -> dict[str, Any]:
    rec = get(state, check_name(name))
    s = state.store.read(swarm.COLLECTION).get(rec["swarm_id"]) or {"name": rec["swarm_id"]}
    manager = swarm.ready_manager(state, s)
    with state.store.transaction(COLLECTION) as tx:
        tx[COLLECTION][name].update(change, updated_at=round(state.now(), 3))
    _apply(state, name, manager)
    state.audit.record(event, state.now(), service=name, actor=actor, **audit)
    return public(state, get(state, name))


def scale(state: State, name: str, wanted: dict[str, Any], actor: str) -> dict[str, Any]:
    """Set replica counts of some services (kept across start/stop, reset by a deploy)."""
    rec = get(state, check_name(name))
    if rec.get("stopped"):
        raise Conflict(f"service {name} is stopped: start it first (service start {name})")
    compose = _substituted(rec["compose"], open_env(state, rec))
    try:
        counts = replicas.check(compose, wanted, name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return _change(state, name, {"replicas": {**(rec.get("replicas") or {}), **counts}},
                   "service.scaled", actor, replicas=counts)


def stop(state: State, name: str, actor: str) -> dict[str, Any]:
    """Every service to 0 replicas; the stack, its networks and configuration stay."""
    return _change(state, name, {"stopped": True}, "service.stopped", actor)


def start(state: State, name: str, actor: str) -> dict[str, Any]:
    """Back to the declared (or scaled) replica counts."""
    return _change(state, name, {"stopped": False}, "service.started", actor)


def remove(state: State, name: str, actor: str) -> dict[str, Any]:
    rec = get(state, check_name(name))
    s = state.store.read(swarm.COLLECTION).get(rec["swarm_id"]) or {}
    if s.get("manager"):
        swarm_tasks.run(state, s["manager"], swarm_tasks.STACK_RM, {"name": name})
    with state.store.transaction(COLLECTION) as tx:
        tx[COLLECTION].pop(name, None)
    state.audit.record("service.removed", state.now(), service=name, actor=actor)
    return {"name": name, "removed": True}


def record_report(state: State, rec: dict[str, Any], report: dict[str, Any]) -> None:
    """Inside a transaction: what a manager reported about the stack (untrusted input)."""
    services = inspect.clean_services(report.get("services"))
    if services is not None:
        rec["services"] = services
        rec["refreshed_at"] = round(state.now(), 3)
    rows = inspect.clean_tasks(report.get("tasks"))
    if rows is not None:
        rec["tasks"] = rows


def forget_swarm(recs: dict[str, Any], swarm_id: str) -> None:
    """Inside a transaction: drop the stacks of a deleted swarm (they went with it)."""
    for name in [n for n, r in recs.items() if r["swarm_id"] == swarm_id]:
        del recs[name]


# -- the deploy task ---------------------------------------------------------------------

def render_deploy(state: State, node_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """SECURITY: the substituted compose file exists only in this delivered payload."""
    rec = state.store.read(COLLECTION).get(str(payload.get("name")))
    if rec is None:
        return payload  # the stack was removed meanwhile: the agent reports no compose
    try:
        compose = envsubst.interpolate(rec["compose"], open_env(state, rec))
        compose = nfs_volumes.map_compose_volumes(compose, rec.get("volumes") or {})
    except (envsubst.EnvError, ValueError):
        return payload
    return {**payload, "compose": replicas.apply(compose, rec.get("replicas") or {},
                                                 bool(rec.get("stopped")))}


def on_deploy_result(state: State, task: dict[str, Any], status: str, output: str) -> str:
    """SECURITY: Docker may echo a substituted value in its error; it is masked first."""
    if status == "succeeded":
        return output
    rec = state.store.read(COLLECTION).get(str((task.get("payload") or {}).get("name")))
    return envsubst.redact(output, open_env(state, rec)) if rec else output


TASK_TYPES = (tasks.TaskType(swarm_tasks.STACK_DEPLOY, render_deploy,
                             on_result=on_deploy_result),)
