"""The one table that turns exceptions into HTTP error responses."""

from __future__ import annotations

import json
import logging

from nimbus.errors import NimbusError, Throttled

log = logging.getLogger("nimbus.api")

# The statuses the API answers with; an error carrying any other status becomes a 500.
STATUSES = frozenset({400, 401, 403, 404, 405, 409, 413, 429, 500, 503, 507})


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def from_exception(exc: BaseException) -> tuple[int, dict[str, str], bytes]:
    """(status, extra headers, body) for any exception raised by a handler."""
    if isinstance(exc, NimbusError):
        headers = {}
        if isinstance(exc, Throttled):
            headers["Retry-After"] = str(exc.retry_after)
        status = exc.status if exc.status in STATUSES else 500
        message = exc.message if status < 500 or status == 507 else "internal error"
        if status >= 500:
            log.error("request failed: %s", exc.message)
        return status, headers, error_body(message)
    log.exception("unexpected error while handling a request")
    return 500, {}, error_body("internal error")
