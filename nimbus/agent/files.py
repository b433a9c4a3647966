"""The agent's data dir: CA, client certificate and key, agent.toml, WireGuard key, state."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from nimbus.config import AgentConfig
from nimbus.errors import ConfigError, Conflict
from nimbus.store.files import ensure_private_dir, fsync_dir, write_private

CONFIG_NAME = "agent.toml"


@dataclass(frozen=True)
class AgentFiles:
    """Paths in one agent data dir; every write is atomic, secrets 0600."""

    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.root / "client.crt"

    @property
    def key(self) -> Path:
        return self.root / "client.key"

    @property
    def next_key(self) -> Path:
        return self.root / "client.key.next"

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def wg_key(self) -> Path:
        return self.root / "wg.key"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "agent.lock"

    def prepare(self) -> None:
        ensure_private_dir(self.root)

    def lock(self) -> IO[str]:
        """Hold the data dir exclusively (flock) while the returned file stays open.

        Two agents on one data dir would join, renew and rewrite the same files; the
        second one stops here with one line. The kernel drops the lock when the process
        dies, even by kill -9, so a stale lock file never blocks a restart.
        """
        self.prepare()
        handle = os.fdopen(os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600), "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "?"
            handle.close()
            raise Conflict(f"another nimbus agent (pid {holder}) already runs on {self.root}; "
                           "one agent per data dir: stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

    def lock_holder(self) -> int | None:
        """The pid of the agent holding the data dir, or None when none does."""
        try:
            handle = open(self.lock_file)  # noqa: SIM115 - closed below
        except OSError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = handle.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None

    def enrolled(self) -> bool:
        return self.config.exists() and self.cert.exists() and self.key.exists()

    def save_enrollment(self, config: AgentConfig, ca_pem: str, cert_pem: str, key_pem: str,
                        wg_private_key: str | None, state: dict[str, Any]) -> None:
        """Write everything a restart needs; agent.toml last, so it marks a complete join."""
        from nimbus.config import dump_toml

        self.prepare()
        write_private(self.key, key_pem)
        write_private(self.cert, cert_pem)
        write_private(self.ca, ca_pem)
        if wg_private_key:
            write_private(self.wg_key, wg_private_key.strip() + "\n")
        self.save_state(state)
        write_private(self.config, dump_toml(config))

    def replace_client_cert(self, cert_pem: str, key_pem: str) -> None:
        """Install a renewed certificate and its key without ever leaving a mismatched pair.

        The new key is staged as client.key.next, then the certificate is replaced, then
        the staged key is renamed over client.key; recover() finishes an interrupted swap.
        """
        write_private(self.next_key, key_pem)
        write_private(self.cert, cert_pem)
        os.replace(self.next_key, self.key)
        fsync_dir(self.root)

    def recover(self) -> None:
        """Finish or discard a renewal interrupted between its file writes."""
        if not self.next_key.exists():
            return
        if self.cert.exists() and key_matches(self.next_key.read_text(),
                                               self.cert.read_text()):
            os.replace(self.next_key, self.key)
            fsync_dir(self.root)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.next_key.unlink()

    def read(self, path: Path) -> str:
        try:
            return path.read_text()
        except OSError as exc:
            raise ConfigError(f"reading {path}: {exc.strerror or exc}") from None

    def load_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save_state(self, state: dict[str, Any]) -> None:
        write_private(self.state, json.dumps(state, indent=2, sort_keys=True) + "\n")


def key_matches(key_pem: str, cert_pem: str) -> bool:
    """True when the private key belongs to the certificate."""
    from cryptography.hazmat.primitives import serialization

    from nimbus.security.pki import load_cert, load_key

    try:
        fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return (load_key(key_pem).public_key().public_bytes(*fmt)
                == load_cert(cert_pem).public_key().public_bytes(*fmt))
    except ValueError:
        return False
