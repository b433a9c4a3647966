"""The control plane's key material in its data dir: CA, server certificate, JWT, WireGuard."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import socket
import threading
from pathlib import Path

from nimbus.config import ServerConfig
from nimbus.errors import ConfigError
from nimbus.security import pki
from nimbus.store.files import (
    ensure_private_dir,
    remove_stale_temps,
    unsafe_permissions,
    write_private,
    write_public,
)

log = logging.getLogger("nimbus.ca")
SECRET_FILES = ("ca.key", "server.key", "jwt.key", "store.key", "wg.key", "bootstrap.secret",
                "audit.log")


class KeyMaterial:
    """Loads, or creates on first start, every key the control plane holds."""

    def __init__(self, data_dir: Path, now: float) -> None:
        self.data_dir = ensure_private_dir(data_dir)
        self.now = now
        # SECURITY: store files hold password hashes and sealed keys: private like the keys.
        store_files = sorted((self.data_dir / "store").glob("[!.]*"))
        problems = unsafe_permissions([self.data_dir, self.data_dir / "store"]
                                      + [self.data_dir / n for n in SECRET_FILES] + store_files)
        if problems:
            raise ConfigError("refusing to start with readable secrets: " + "; ".join(problems))
        remove_stale_temps(self.data_dir)
        self.ca_cert_path = self.data_dir / "ca.crt"
        self.ca_key_path = self.data_dir / "ca.key"
        # Until a store exists nothing depends on these keys yet, so a first start that was
        # interrupted half-way simply creates them again. Afterwards a missing key is an error:
        # a new CA or store key would silently orphan every certificate and API key issued.
        self.initialized = (self.data_dir / "store" / "meta.json").exists()
        if not (self.ca_key_path.exists() and self.ca_cert_path.exists()):
            self._refuse_to_recreate(self.ca_key_path, self.ca_cert_path)
            cert, key = pki.create_ca(now)
            write_private(self.ca_key_path, key)
            write_public(self.ca_cert_path, cert)
            log.info("created a new CA in %s", self.ca_cert_path)
        try:
            self.ca_pem = self.ca_cert_path.read_text()
            self.ca_key_pem = self.ca_key_path.read_text()
            self.ca_fingerprint = pki.ca_fingerprint(self.ca_pem)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"reading the CA in {self.data_dir}: {exc}; restore the data "
                              "dir from a backup (nimbus restore)") from None
        self.jwt_secret = self._random_file("jwt.key", secrets.token_hex(32) + "\n")
        self._random_file("store.key", base64.b64encode(os.urandom(32)).decode() + "\n")
        self._wg_lock = threading.Lock()
        self._wg_keypair: tuple[str, str] | None = None

    def wireguard_keypair(self) -> tuple[str, str]:
        """(private, public) WireGuard key of the control plane; wg.key (0600) is created on
        first use, so a --no-wireguard control plane only has one once it adds a node."""
        from nimbus.security import wgkeys

        with self._wg_lock:
            if self._wg_keypair is None:
                path = self.data_dir / "wg.key"
                if not path.exists():
                    write_private(path, wgkeys.generate_keypair()[0] + "\n")
                private = path.read_text().strip()
                self._wg_keypair = (private, wgkeys.public_key(private))
            return self._wg_keypair

    def _refuse_to_recreate(self, *paths: Path) -> None:
        if self.initialized:
            missing = ", ".join(str(p) for p in paths if not p.exists())
            raise ConfigError(f"{missing} is missing from an existing control plane; restore "
                              "the data dir from a backup (nimbus restore) - a new key would "
                              "invalidate every credential issued with the old one")

    def _random_file(self, name: str, fresh: str) -> bytes:
        path = self.data_dir / name
        if not path.exists():
            self._refuse_to_recreate(path)
            write_private(path, fresh)
        return path.read_text().strip().encode()

    def server_cert(self, config: ServerConfig) -> tuple[Path, Path]:
        """The (cert, key) the API serves: the operator's, or ours covering every SAN."""
        if config.tls_cert:
            for p in (config.tls_cert, config.tls_key):
                if not os.access(p, os.R_OK):
                    raise ConfigError(f"cannot read TLS file {p}")
            return Path(config.tls_cert), Path(config.tls_key)
        cert_path, key_path = self.data_dir / "server.crt", self.data_dir / "server.key"
        wanted = set(required_sans(config))
        current = pki.server_cert_sans(cert_path.read_text()) if cert_path.exists() else set()
        expired = cert_path.exists() and (
            pki.cert_info(cert_path.read_text()).not_after < self.now + 30 * 86400)
        if not key_path.exists() or not wanted <= current or expired:
            cert, key = pki.create_server_cert(self.ca_pem, self.ca_key_pem,
                                               sorted(wanted | current), self.now)
            write_private(key_path, key)
            write_public(cert_path, cert)
            log.info("issued the API server certificate for %s", ", ".join(sorted(wanted)))
        return cert_path, key_path


def required_sans(config: ServerConfig) -> list[str]:
    """localhost, 127.0.0.1, the host name, public and listen addresses, the overlay .1."""
    from nimbus.config import parse_listen

    sans = ["localhost", "127.0.0.1", "::1", socket.gethostname(), config.overlay_ip]
    host = parse_listen(config.listen)[0]
    if host not in ("0.0.0.0", "::", ""):
        sans.append(host)
    if config.public_address:
        sans.append(config.public_address)
    if config.public_url:
        from urllib.parse import urlsplit

        if urlsplit(config.public_url).hostname:
            sans.append(urlsplit(config.public_url).hostname or "")
    sans.extend(config.extra_sans)
    return [s for s in sans if s]
