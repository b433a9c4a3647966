"""Applies Swarm plans to one local Docker Engine: the `docker` CLI (logged by Runner) and,
for the two calls that carry the join token, the Engine API on its unix socket."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from typing import Any

from nimbus.docker import compose as composefile
from nimbus.docker import inspect, plan
from nimbus.docker import logs as logstream
from nimbus.errors import NimbusError
from nimbus.sysrun import CommandError, Runner

log = logging.getLogger("nimbus.docker")

DEFAULT_HOST = "unix:///var/run/docker.sock"


class DockerError(NimbusError):
    """The local Docker Engine is missing, unreachable or refused a request."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class DockerEngine:
    """One Docker Engine reached at `host` (unix:///path)."""

    def __init__(self, host: str = "", runner: Runner | None = None) -> None:
        self.host = host or DEFAULT_HOST
        if not self.host.startswith("unix://"):
            raise DockerError(f"docker_host {self.host!r} must be a unix:// socket")
        self.socket_path = self.host[len("unix://"):]
        self.runner = runner or Runner()

    # -- plumbing ---------------------------------------------------------------------------

    def available(self) -> bool:
        """True when the docker CLI is installed and the engine's socket exists."""
        return shutil.which("docker") is not None and os.path.exists(self.socket_path)

    def docker(self, args: list[str], *, input: str | None = None, timeout: float = 60,
               check: bool = True) -> Any:
        """Run `docker --host HOST ARGS`; DockerError with docker's own message on failure."""
        try:
            return self.runner.run(["docker", "--host", self.host, *args], input=input,
                                   timeout=timeout, check=check)
        except CommandError as exc:
            detail = " ".join(exc.stderr.split()) or f"exit {exc.returncode}"
            raise DockerError(f"docker {' '.join(args[:2])}: {detail[:300]}") from None

    def api(self, method: str, path: str, body: dict[str, Any] | None = None,
            timeout: float = 60) -> Any:
        """One Engine API call; returns the decoded JSON (or None for an empty body).

        SECURITY: bodies may carry the swarm join token; neither the body nor an error
        echoing it is logged (only method and path are).
        """
        log.debug("[#] docker api %s %s", method, path)
        conn = _UnixConnection(self.socket_path, timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as exc:
            raise DockerError(f"docker engine at {self.host}: {exc}") from None
        finally:
            conn.close()
        data: Any = None
        if raw:
            with contextlib.suppress(ValueError):
                data = json.loads(raw)
        if resp.status >= 400:
            msg = data.get("message") if isinstance(data, dict) else raw.decode(errors="replace")
            token = (body or {}).get("JoinToken")
            if token and msg:
                msg = str(msg).replace(str(token), "<redacted>")
            raise DockerError(f"docker engine: {' '.join(str(msg).split())[:300]}")
        return data

    def stream(self, path: str, seconds: float, max_bytes: int) -> bytes:
        """The body of a streaming GET, read until it ends, `seconds` pass or `max_bytes`
        arrived (a followed log never ends by itself)."""
        log.debug("[#] docker api GET %s (stream, %.1fs)", path.split("?", 1)[0], seconds)
        deadline = time.monotonic() + seconds
        conn = _UnixConnection(self.socket_path, max(1.0, seconds))
        buf = bytearray()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            if resp.status >= 400:
                raw = resp.read(4096)
                raise DockerError(f"docker engine: {_message(raw)}")
            while len(buf) < max_bytes:
                left = deadline - time.monotonic()
                if left <= 0 or conn.sock is None:
                    break
                conn.sock.settimeout(left)
                try:
                    chunk = resp.read1(65536)
                except (OSError, http.client.HTTPException):
                    break  # the deadline passed mid-read: what arrived is the answer
                if not chunk:
                    break
                buf += chunk
        except OSError as exc:
            raise DockerError(f"docker engine at {self.host}: {exc}") from None
        finally:
            conn.close()
        return bytes(buf)

    # -- state --------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """{version, swarm_state, swarm_node_id, swarm_id, manager, manager_addrs}."""
        return plan.parse_info(self.docker(plan.info_argv(), timeout=20).stdout)

    def nodes(self) -> list[dict[str, Any]]:
        return plan.parse_nodes(self.docker(plan.node_ls_argv()).stdout)

    def report(self) -> dict[str, str] | None:
        """What the heartbeat says about Docker: {version, swarm_state, swarm_node_id}, or
        None when there is no engine. One Engine API call, no process started."""
        if not os.path.exists(self.socket_path):
            return None
        try:
            info = plan.parse_info(json.dumps(self.api("GET", "/info", timeout=5)))
        except (DockerError, ValueError):
            return None
        return {"version": info["version"][:64] or "unknown",
                "swarm_state": info["swarm_state"][:16],
                "swarm_node_id": info["swarm_node_id"][:64]}

    # -- swarm --------------------------------------------------------------------------------

    def swarm_init(self, addr: str, ingress_timeout: float = 30) -> dict[str, Any]:
        """Make this engine the first manager; recreate ingress with the overlay MTU.

        Idempotent: an engine that already manages a swarm is left as it is.
        """
        info = self.info()
        if info["swarm_state"] == "active" and info["manager"]:
            return info
        if info["swarm_state"] != "inactive":
            raise DockerError(f"this engine is already in a swarm (state "
                              f"{info['swarm_state']}); remove it from that swarm first")
        self.docker(plan.init_argv(addr))
        self._recreate_ingress(ingress_timeout)
        return self.info()

    def _recreate_ingress(self, timeout: float) -> None:
        remove, create = plan.ingress_mtu_argv()
        self.docker(remove, input="y\n", check=False)
        deadline = time.monotonic() + timeout
        while True:  # the removal finishes in the background
            try:
                self.docker(create)
                return
            except DockerError as exc:
                if "already exists" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def join_tokens(self) -> dict[str, str]:
        """{'worker': …, 'manager': …} — SECURITY: secrets; the caller must not log them."""
        tokens = (self.api("GET", "/swarm") or {}).get("JoinTokens") or {}
        return {"worker": str(tokens.get("Worker", "")), "manager": str(tokens.get("Manager", ""))}

    def swarm_join(self, addr: str, manager_addr: str, token: str) -> dict[str, Any]:
        """Join the swarm managed at manager_addr (idempotent when already a member of it)."""
        info = self.info()
        manager = f"{plan.overlay_ip(manager_addr)}:{plan.SWARM_PORT}"
        if info["swarm_state"] == "active":
            if manager in info["manager_addrs"]:
                return info
            raise DockerError("this engine is already in another swarm; remove it first")
        self.api("POST", "/swarm/join", plan.join_request(addr, manager_addr, token))
        return self.info()

    def swarm_leave(self, attempts: int = 3) -> dict[str, Any]:
        """Leave the swarm (idempotent). A manager's leave can time out inside Docker
        ("context deadline exceeded") while it winds raft down; it is retried."""
        for attempt in range(attempts):
            if self.info()["swarm_state"] == "inactive":
                break
            try:
                self.docker(plan.leave_argv(force=True), timeout=90)
            except DockerError:
                if attempt == attempts - 1:
                    raise
                time.sleep(1)
        return self.info()

    def node_rm(self, swarm_node_id: str) -> None:
        """Remove a node from the swarm (idempotent: an unknown node is already gone)."""
        try:
            self.docker(plan.node_rm_argv(swarm_node_id))
        except DockerError as exc:
            if "not found" not in str(exc).lower():
                raise

    def promote(self, swarm_node_id: str) -> None:
        self.docker(plan.promote_argv(swarm_node_id))

    # -- stacks -------------------------------------------------------------------------------

    def stack_deploy(self, name: str, compose: dict[str, Any]) -> list[dict[str, Any]]:
        """`docker stack deploy` of the compose dict (written as JSON, which is YAML)."""
        body = composefile.with_overlay_mtu(compose)
        tmp = tempfile.mkdtemp(prefix="nimbus-stack-")
        try:
            path = os.path.join(tmp, "compose.json")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(body, f)
            self.docker(plan.stack_deploy_argv(name, path), timeout=120)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.stack_services(name)

    def stack_rm(self, name: str) -> None:
        """Remove a stack (idempotent: a stack that is already gone is fine)."""
        try:
            self.docker(plan.stack_rm_argv(name), timeout=120)
        except DockerError as exc:
            if "nothing found in stack" not in str(exc).lower():
                raise

    def stack_services(self, name: str) -> list[dict[str, Any]]:
        return self.stack_state(name)["services"]

    def _stack_objects(self, name: str) -> tuple[list[Any], list[Any]]:
        q = inspect.stack_filter(plan.check_stack_name(name))
        return self.api("GET", f"/services?{q}") or [], self.api("GET", f"/tasks?{q}") or []

    def stack_state(self, name: str) -> dict[str, Any]:
        """{services: [{name, image, mode, running, desired}], tasks: [...]} of a stack."""
        services, tasks = self._stack_objects(name)
        hosts = inspect.hostnames(self.api("GET", "/nodes") or [])
        return {"services": inspect.summarize(services, tasks, name),
                "tasks": inspect.task_rows(tasks, services, hosts, name)}

    def stack_logs(self, name: str, service: str | None, tail: int | None,
                   since: str | None, follow_sec: float, budget: int) -> dict[str, Any]:
        """The stack's log lines (every service at once, or one), newest within `budget`
        bytes; with follow_sec > 0 the streams stay open that long for new lines."""
        services, _ = self._stack_objects(name)
        if service:
            services = [s for s in services if (s.get("Spec") or {}).get("Name")
                        == f"{name}_{service}"]
            if not services:
                raise DockerError(f"stack {name} has no service {service[:64]!r}")
        query = logstream.query(tail, since, follow_sec > 0)
        raw: dict[str, bytes] = {}

        def read(svc: dict[str, Any]) -> None:
            raw[svc["ID"]] = self.stream(f"/services/{svc['ID']}/logs?{query}",
                                         follow_sec or 20.0, 4 * budget)

        threads = [threading.Thread(target=read, args=(s,), daemon=True)
                   for s in services[:inspect.MAX_SERVICES]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _, tasks = self._stack_objects(name)  # after reading: tasks started meanwhile too
        by_id = {t.get("ID"): t for t in tasks}
        hosts = inspect.hostnames(self.api("GET", "/nodes") or [])
        lines: list[dict[str, Any]] = []
        for svc in services:
            frames, _ = logstream.demux(raw.get(svc["ID"], b""))
            short = str((svc.get("Spec") or {}).get("Name", "")).removeprefix(f"{name}_")
            lines += logstream.label(logstream.lines(frames), by_id, hosts, short)
        kept, truncated = logstream.newest_within(lines, budget)
        return {"lines": kept, "truncated": truncated}


def _message(raw: bytes) -> str:
    with contextlib.suppress(ValueError):
        data = json.loads(raw)
        if isinstance(data, dict) and data.get("message"):
            return " ".join(str(data["message"]).split())[:300]
    return " ".join(raw.decode(errors="replace").split())[:300]
