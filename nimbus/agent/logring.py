"""The agent's own recent log lines, kept in memory for `nimbus node logs` (bounded, masked)."""

from __future__ import annotations

import collections
import logging
import re
import threading

MAX_LINES = 2000
MAX_LINE = 2000  # characters of one line kept
# SECURITY: shapes of secrets that must never leave the node in a log line, even if some
# code path logged one by mistake: swarm join tokens, Nimbus join tokens, private keys.
_SECRETS = re.compile(r"SWMTKN-[\w-]+|nimbus-join-v1\.[\w.-]+|"
                      r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*"
                      r"PRIVATE KEY-----|$)")


def scrub(text: str) -> str:
    """The line with anything shaped like a secret replaced by <redacted>."""
    return _SECRETS.sub("<redacted>", text)


class LogRing(logging.Handler):
    """A logging handler holding the last MAX_LINES formatted records."""

    def __init__(self, size: int = MAX_LINES) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
        self._lines: collections.deque[str] = collections.deque(maxlen=size)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = scrub(self.format(record))[:MAX_LINE]
        except Exception:  # noqa: BLE001 - a bad record must not break logging
            return
        with self._guard:
            self._lines.append(line)

    def tail(self, n: int) -> list[str]:
        with self._guard:
            lines = list(self._lines)
        return lines[-n:] if n > 0 else []

    def attach(self, logger_name: str = "nimbus") -> None:
        logging.getLogger(logger_name).addHandler(self)

    def detach(self, logger_name: str = "nimbus") -> None:
        logging.getLogger(logger_name).removeHandler(self)
