"""Test harness: the real `nimbus serve` process on loopback and the real CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYZ = REPO / "dist" / "nimbus.pyz"


def nimbus_argv() -> list[str]:
    """`python -m nimbus`, or the built zipapp when NIMBUS_TEST_PYZ=1."""
    if os.environ.get("NIMBUS_TEST_PYZ") == "1":
        return [sys.executable, str(PYZ)]
    return [sys.executable, "-m", "nimbus"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NIMBUS_") or k == "NIMBUS_TEST_PYZ"}
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO)
    return env


class Server:
    """One control-plane process with its own data dir and config."""

    def __init__(self, tmp: Path, settings: dict[str, Any] | None = None,
                 extra_args: list[str] | None = None,
                 global_args: list[str] | None = None) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.data_dir = tmp / "data"
        self.config_path = tmp / "api.toml"
        self.url = f"https://127.0.0.1:{self.port}"
        self.log_path = tmp / "serve.log"
        self.extra_args = extra_args or ["--no-wireguard"]
        self.global_args = global_args or []  # e.g. ["--debug"], before the subcommand
        self.proc: subprocess.Popen[bytes] | None = None
        settings = {"listen": f"127.0.0.1:{self.port}", "data_dir": str(self.data_dir),
                    **(settings or {})}
        import tomli_w

        self.config_path.write_text(tomli_w.dumps(settings))

    def start(self, timeout: float = 20) -> Server:
        env = base_env(self.tmp / "home")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*nimbus_argv(), *self.global_args, "serve", "--config", str(self.config_path),
                 *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nimbus serve exited: {self.log()}")
            if self.healthy():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"nimbus serve did not become healthy: {self.log()}")

    def healthy(self) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(self.url + "/healthz", context=ctx, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def ca_pem(self) -> str:
        return (self.data_dir / "ca.crt").read_text()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Cli:
    """Runs the real CLI with its own HOME (and so its own ~/.nimbus/config.json)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.env = base_env(home)

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
            input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*nimbus_argv(), *args], capture_output=True, text=True,
                                env={**self.env, **(env or {})}, input=input,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"nimbus {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.run(*args, "-o", "json", **kw).stdout)


def bootstrap_admin(server: Server, cli: Cli) -> dict[str, Any]:
    """Local bootstrap against the server's data dir, then `nimbus configure --from`."""
    conn = server.tmp / "admin.json"
    cli.run("bootstrap", "--data-dir", str(server.data_dir), "--output", str(conn))
    cli.run("configure", "--from", str(conn))
    return json.loads(conn.read_text())
