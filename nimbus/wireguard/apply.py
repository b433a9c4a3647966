"""Applies WireGuard settings to the OS with `ip`/`wg` (kernel or wireguard-go)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from nimbus.errors import ConfigError
from nimbus.sysrun import CommandError, Runner
from nimbus.wireguard.config import (
    Change,
    Peer,
    counts,
    parse_wg_dump,
    parse_wg_dump_interface,
    plan,
    to_wg_args,
)

log = logging.getLogger("nimbus.wireguard.apply")

# wireguard-go stays in the foreground (and keeps our output pipes open) with these set.
_WG_GO_ENV_TRAPS = ("WG_PROCESS_FOREGROUND", "LOG_LEVEL")


class WireGuardInterface:
    """One WireGuard interface, optionally inside a network namespace."""

    def __init__(self, name: str, runner: Runner, netns: str | None = None) -> None:
        if not name or len(name) > 15 or "/" in name or name.strip() != name:
            raise ValueError(f"interface name {name!r} must be 1-15 chars without '/' or spaces")
        self.name = name
        self.runner = runner
        self.netns = netns

    def _run(self, argv: list[str], **kw: Any) -> Any:
        return self.runner.run(argv, netns=self.netns, **kw)

    def _ip_json(self, argv: list[str]) -> list[dict[str, Any]]:
        """The JSON an `ip -j …` command prints, or [] when it fails (no such interface)."""
        proc = self._run(argv, check=False)
        if proc.returncode != 0:
            return []
        try:
            return json.loads(proc.stdout or "[]")
        except ValueError:
            return []

    def _link(self) -> dict[str, Any] | None:
        """`ip -d -j link show NAME` as a dict, or None when the interface is missing."""
        links = self._ip_json(["ip", "-d", "-j", "link", "show", "dev", self.name])
        return links[0] if links else None

    def exists(self) -> bool:
        """True when the interface exists (in our namespace)."""
        return self._link() is not None

    def mode(self) -> str | None:
        """'kernel', 'wireguard-go', or None when missing."""
        link = self._link()
        if link is None:
            return None
        kind = (link.get("linkinfo") or {}).get("info_kind")
        return "kernel" if kind == "wireguard" else "wireguard-go"

    def _create(self) -> str:
        try:
            self._run(["ip", "link", "add", self.name, "type", "wireguard"])
            return "kernel"
        except CommandError as exc:
            log.debug("no kernel WireGuard for %s (%s); trying wireguard-go", self.name, exc)
        argv = ["wireguard-go", self.name]
        if any(os.environ.get(v) for v in _WG_GO_ENV_TRAPS):
            argv = ["env", *(f"-u{v}" for v in _WG_GO_ENV_TRAPS), *argv]
        # wireguard-go creates the tun device and UAPI socket, then daemonizes itself.
        self._run(argv)
        return "wireguard-go"

    def up(self, private_key: str, address_cidr: str, listen_port: int | None) -> str:
        """Create/configure the interface and bring it up; return 'kernel' or 'wireguard-go'.

        Idempotent: settings already in place are not touched. If setup fails after
        this call created the interface, the interface is deleted again.
        """
        from nimbus.security.wgkeys import public_key

        want_pub = public_key(private_key)
        created = False
        mode = self.mode()
        if mode is None:
            if os.geteuid() != 0:
                raise ConfigError(f"creating WireGuard interface {self.name} needs root "
                                  "(CAP_NET_ADMIN); run as root or use --no-wireguard")
            mode = self._create()
            created = True
        try:
            self._configure(private_key, want_pub, address_cidr, listen_port)
        except CommandError:
            if created:
                self._run(["ip", "link", "del", self.name], check=False)
            raise
        return mode

    def _configure(
        self, private_key: str, want_pub: str, address_cidr: str, listen_port: int | None
    ) -> None:
        have_pub, have_port = parse_wg_dump_interface(
            self._run(["wg", "show", self.name, "dump"]).stdout
        )
        if have_pub != want_pub:
            # SECURITY: the key goes through stdin, never argv (visible in ps / logs).
            argv = ["wg", "set", self.name, "private-key", "/dev/stdin"]
            self._run(argv, input=private_key + "\n")
        if listen_port is not None and have_port != listen_port:
            self._run(["wg", "set", self.name, "listen-port", str(listen_port)])
        link = self._link() or {}
        if not self._has_address(address_cidr):
            self._run(["ip", "address", "replace", address_cidr, "dev", self.name])
        if "UP" not in (link.get("flags") or []):
            self._run(["ip", "link", "set", self.name, "up"])

    def _has_address(self, cidr: str) -> bool:
        data = self._ip_json(["ip", "-j", "address", "show", "dev", self.name])
        have = {
            f"{a.get('local')}/{a.get('prefixlen')}"
            for link in data
            for a in link.get("addr_info", [])
        }
        return cidr in have

    def peers(self) -> dict[str, Peer]:
        """Current peers from `wg show NAME dump`."""
        return parse_wg_dump(self._run(["wg", "show", self.name, "dump"]).stdout)

    def apply_peers(self, desired: list[Peer]) -> dict[str, int]:
        """Make the peer set equal `desired` with one `wg set`; returns change counts.

        ValueError for an invalid desired list (nothing is changed). On a failed
        `wg set` the previous peers are restored if possible and CommandError raised.
        """
        before = self.peers()
        changes = plan(before, desired)
        if not changes:
            return counts(changes)
        try:
            self._run(to_wg_args(self.name, changes))
        except CommandError:
            self._restore(before)
            raise
        result = counts(changes)
        log.info(
            "wireguard %s: %d added, %d updated, %d removed",
            self.name,
            result["added"],
            result["updated"],
            result["removed"],
        )
        return result

    def _restore(self, before: dict[str, Peer]) -> None:
        try:
            undo: list[Change] = plan(self.peers(), list(before.values()))
            if undo:
                self._run(to_wg_args(self.name, undo))
        except (CommandError, ValueError) as exc:
            log.error("wireguard %s: could not restore previous peers: %s", self.name, exc)

    def down(self) -> None:
        """Delete the interface (wireguard-go exits with it); fine if it is already gone."""
        proc = self._run(["ip", "link", "del", self.name], check=False)
        if proc.returncode != 0 and self.exists():
            raise CommandError(proc.args, proc.returncode, proc.stderr or "")
