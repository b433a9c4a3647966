"""Helpers for agent tests: real `nimbus agent` processes, direct join calls, polling."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nimbus.client import ApiClient
from tests.harness import Cli, Server, base_env, bootstrap_admin, nimbus_argv

FAST = {"heartbeat_interval_sec": 1}


def control_plane(server_factory: Any, cli: Cli, **settings: Any) -> Server:
    """A fresh server with fast heartbeats and the CLI configured as its admin."""
    server = server_factory({**FAST, **settings})
    bootstrap_admin(server, cli)
    return server


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0,
             every: float = 0.25) -> Any:
    """Poll until check() returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


def add_node(cli: Cli, ip: str = "192.0.2.10", name: str | None = None) -> tuple[str, str]:
    args = ["node", "add", "--get-token", "--ip", ip, *(["--name", name] if name else [])]
    data = cli.json(*args)
    return data["node"]["id"], data["join_token"]


def node_status(cli: Cli, node_id: str) -> str | None:
    for n in cli.json("node", "list"):
        if n["id"] == node_id:
            return n["status"]
    return None


def join_body(token: str, csr: str | None = None, **changes: Any) -> tuple[dict[str, Any], str]:
    """A join request body for token (fresh CSR unless given) and the matching key."""
    from nimbus import wire
    from nimbus.security.pki import make_csr
    from nimbus.security.wgkeys import generate_keypair

    fields = wire.decode_join_token(token)
    key = ""
    if csr is None:
        csr, key = make_csr(fields["node_id"])
    body = {"node_id": fields["node_id"], "secret": fields["secret"], "csr": csr,
            "hostname": "test-host", "arch": "x86_64", "agent_version": "0.1.0",
            "ip_address": "127.0.0.1", "wireguard_public_key": generate_keypair()[1], **changes}
    return body, key


def post_join(server: Server, body: dict[str, Any]) -> tuple[int, bytes]:
    client = ApiClient(server.url, ca_pem=server.ca_pem())
    try:
        status, _, data = client.raw("POST", "/v1/nodes/join", body)
    finally:
        client.close()
    return status, data


def join_direct(server: Server, token: str, tmp: Path) -> tuple[str, Path, Path]:
    """Join without an agent process: (node_id, cert file, key file)."""
    body, key = join_body(token)
    status, data = post_join(server, body)
    assert status == 200, data
    tmp.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = tmp / "client.crt", tmp / "client.key"
    cert_file.write_text(json.loads(data)["data"]["cert_pem"])
    key_file.write_text(key)
    key_file.chmod(0o600)
    return body["node_id"], cert_file, key_file


def node_client(server: Server, cert_file: Path, key_file: Path) -> ApiClient:
    return ApiClient(server.url, ca_pem=server.ca_pem(), cert_file=str(cert_file),
                     key_file=str(key_file), timeout=15)


class AgentProc:
    """One real `nimbus agent` process with its own data dir and log file."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.dir / "data"
        self.settings = self.dir / "agent-settings.toml"
        self.settings.write_text("")  # never pick up a real /etc/nimbus/agent.toml
        self.log_path = self.dir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, token: str | None = None, *extra: str) -> AgentProc:
        joining = ["--join", "--token-file", "-"] if token is not None else []
        argv = [*nimbus_argv(), "agent", *joining, "--config", str(self.settings),
                "--data-dir", str(self.data_dir), "--no-wireguard", *extra]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log,
                                         stderr=subprocess.STDOUT, env=base_env(self.dir),
                                         start_new_session=True)
        assert self.proc.stdin is not None
        self.proc.stdin.write((token or "").encode())
        self.proc.stdin.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM by PID and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)


class AgentPool:
    """Starts agents for one test and stops every one of them (by PID) at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[AgentProc] = []

    def new(self, name: str = "agent") -> AgentProc:
        agent = AgentProc(self.tmp, name)
        self.started.append(agent)
        return agent

    def join(self, token: str, name: str = "agent") -> AgentProc:
        return self.new(name).start(token)

    def close(self) -> None:
        for agent in self.started:
            agent.stop(timeout=10)
