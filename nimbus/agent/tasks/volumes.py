"""Agent handlers of the NFS volume tasks: check a folder, and sync this node's whole share.

`volume.sync` carries everything this node should have (rendered at delivery from the
control plane's records): the exports it serves with their client lists, and the Docker
volumes `nimbus-NAME` it should hold. Applying it twice changes nothing; what is no longer
listed goes (the export, ganesha once it serves nothing, our labelled Docker volumes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nimbus.agent import nfs
from nimbus.agent.supervisor import ProcessError
from nimbus.agent.tasks.base import Handler, TaskContext
from nimbus.docker.engine import DockerEngine, DockerError
from nimbus.nfs import volumes


def _data_dir(ctx: TaskContext) -> Path:
    data_dir = ctx.data_dir
    if not data_dir:
        raise ValueError("this agent has no data dir to keep NFS state in")
    return Path(data_dir)


def check(ctx: TaskContext, payload: dict[str, Any]) -> str:
    """The folder a new volume would export, checked here (nothing is created)."""
    name = volumes.check_name(payload.get("name"))
    folder = nfs.resolve_folder(_data_dir(ctx), name, payload.get("folder") or None)
    return json.dumps({"folder": folder, "exists": Path(folder).is_dir()})


def sync(ctx: TaskContext, payload: dict[str, Any]) -> str:
    out: dict[str, Any] = {"served": [], "errors": {}, "mounts": {}}
    serve = payload.get("serve") or {}
    wanted = serve.get("exports") or []
    if wanted or (ctx.supervisor and nfs.PROCESS in ctx.supervisor.status()):
        out.update(_serve(ctx, str(serve.get("bind_ip") or ""), wanted))
    out["mounts"] = _mounts(ctx, payload.get("mounts") or [])
    return json.dumps(out, sort_keys=True)


def _serve(ctx: TaskContext, bind_ip: str, wanted: list[dict[str, Any]]) -> dict[str, Any]:
    if ctx.supervisor is None:
        raise ValueError("this agent runs no process supervisor")
    own = ctx.overlay_ip
    if wanted and own and bind_ip != own:
        raise ValueError(f"asked to serve on {bind_ip}, but this node's overlay IP is {own}")
    exports, errors = nfs.plan_exports(_data_dir(ctx), wanted)
    try:
        state = nfs.serve(ctx.supervisor, _data_dir(ctx), bind_ip, exports)
    except (nfs.NfsError, ProcessError, ValueError) as exc:
        return {"served": [], "errors": {**errors, **{e.name: str(exc) for e in exports}},
                "ganesha": "failed"}
    return {"served": [e.name for e in exports], "errors": errors, "ganesha": state}


# -- Docker volumes ------------------------------------------------------------------------

def _mounts(ctx: TaskContext, wanted: list[dict[str, Any]]) -> dict[str, str]:
    """{volume name: "ok" | one-line error} for every wanted volume and each one removed."""
    eng = DockerEngine(ctx.docker_host)
    if not eng.available():
        return {str(m.get("name")): "no Docker Engine on this node" for m in wanted}
    try:
        ours = _ours(eng, [volumes.docker_name(str(m.get("name"))) for m in wanted])
    except (DockerError, ValueError) as exc:
        return {str(m.get("name")): str(exc) for m in wanted}
    result: dict[str, str] = {}
    keep = set()
    for m in wanted:
        name = str(m.get("name"))
        keep.add(volumes.docker_name(name))
        result[name] = _ensure_volume(eng, ours, name, str(m.get("server_ip")),
                                      str(m.get("export_path")))
    for dname, info in ours.items():
        if dname in keep or not info.get("ours"):
            continue
        result[dname[len(volumes.DOCKER_PREFIX):]] = _remove(eng, dname, "removed")
    return result


def _ours(eng: DockerEngine, names: list[str]) -> dict[str, dict[str, Any]]:
    """Docker volumes that carry our label, plus the wanted names (ours or not)."""
    labelled = eng.docker(["volume", "ls", "-q", "--filter", f"label={volumes.LABEL}"]
                          ).stdout.split()
    look = sorted(set(labelled) | set(names))
    existing = set(eng.docker(["volume", "ls", "-q"]).stdout.split())
    look = [n for n in look if n in existing]
    found: dict[str, dict[str, Any]] = {}
    if look:
        for item in json.loads(eng.docker(["volume", "inspect", *look]).stdout or "[]"):
            labels = item.get("Labels") or {}
            found[item["Name"]] = {"ours": volumes.LABEL in labels,
                                   "options": item.get("Options") or {}}
    return found


def _ensure_volume(eng: DockerEngine, ours: dict[str, dict[str, Any]], name: str,
                   server_ip: str, export: str) -> str:
    try:
        options = volumes.docker_options(server_ip, export)
        dname = volumes.docker_name(name)
    except ValueError as exc:
        return str(exc)
    have = ours.get(dname)
    if have is not None and not have["ours"]:
        return f"a Docker volume {dname} exists that nimbus did not create: rename or remove it"
    if have is not None and have["options"] == options:
        return "ok"
    if have is not None:  # options changed (the server moved): recreate
        gone = _remove(eng, dname, "ok")
        if gone != "ok":
            return gone
    try:
        eng.docker(volumes.docker_create_argv(name, server_ip, export))
    except DockerError as exc:
        return str(exc)
    return "ok"


def _remove(eng: DockerEngine, dname: str, done: str) -> str:
    try:
        eng.docker(["volume", "rm", dname])
    except DockerError as exc:
        return f"cannot remove {dname} yet: {exc}"
    return done


HANDLERS: dict[str, Handler] = {"volume.check": check, "volume.sync": sync}
TOOLS = {"ganesha": nfs.probe}
