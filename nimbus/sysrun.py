"""Runs system commands (ip, wg, wireguard-go) with wg-quick style debug logging."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from typing import IO, Any

from nimbus.errors import NimbusError

log = logging.getLogger("nimbus.sysrun")

_REDACTED = "<redacted>"


class CommandError(NimbusError):
    """A system command failed, timed out or was not found; str() is one line."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        detail = " ".join(stderr.split()) or "no error output"
        if len(detail) > 300:
            detail = detail[:297] + "..."
        super().__init__(f"command failed (exit {returncode}): {shlex.join(argv)}: {detail}")


def _scrub(text: str, secret: str | None) -> str:
    """SECURITY: tools such as `wg` echo a bad key back on stderr; never pass stdin on."""
    if not text or not secret:
        return text
    for part in {secret, secret.strip(), *secret.split()}:
        if part:
            text = text.replace(part, _REDACTED)
    return text


def which(name: str) -> str | None:
    """Full path of an executable on PATH (also /usr/sbin and /sbin), or None."""
    found = shutil.which(name)
    if found:
        return found
    extra = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin"])
    return shutil.which(name, path=extra)


class Runner:
    """Runs argv lists without a shell; tests replace it with a fake."""

    def wrap(self, argv: list[str], netns: str | None = None) -> list[str]:
        """The argv actually executed: prefixed with `ip netns exec NS` when netns is given."""
        if netns:
            return ["ip", "netns", "exec", netns, *argv]
        return list(argv)

    def run(
        self,
        argv: list[str],
        *,
        input: str | None = None,
        check: bool = True,
        netns: str | None = None,
        timeout: float = 30,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion; raise CommandError on failure when check is true.

        SECURITY: `input` may carry a private key; it is never logged and is scrubbed
        from error output.
        """
        full = self.wrap(argv, netns)
        log.debug("[#] %s", shlex.join(full))
        try:
            proc = subprocess.run(
                full,
                input=input if input is not None else "",
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=dict(env) if env is not None else None,
            )
        except FileNotFoundError:
            proc = subprocess.CompletedProcess(full, 127, "", f"{full[0]}: command not found")
        except subprocess.TimeoutExpired:
            raise CommandError(full, -1, f"timed out after {timeout:g}s") from None
        if proc.returncode != 0:
            proc.stderr = _scrub(proc.stderr or "", input)
            if check:
                raise CommandError(full, proc.returncode, proc.stderr)
        return proc

    def popen(
        self,
        argv: list[str],
        *,
        netns: str | None = None,
        env: Mapping[str, str] | None = None,
        stdout: IO[Any] | int | None = None,
        stderr: IO[Any] | int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process (own session, stdin from /dev/null)."""
        full = self.wrap(argv, netns)
        log.debug("[#] %s &", shlex.join(full))
        try:
            return subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandError(full, 127, str(exc)) from None
