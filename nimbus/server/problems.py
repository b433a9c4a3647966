"""The one table that turns exceptions into HTTP error responses."""

from __future__ import annotations

import json
import logging

from nimbus.errors import NimbusError, Throttled

log = logging.getLogger("nimbus.api")

REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
           507: "Insufficient Storage"}


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def from_exception(exc: BaseException) -> tuple[int, dict[str, str], bytes]:
    """(status, extra headers, body) for any exception raised by a handler."""
    if isinstance(exc, NimbusError):
        headers = {}
        if isinstance(exc, Throttled):
            headers["Retry-After"] = str(exc.retry_after)
        status = exc.status if exc.status in REASONS else 500
        message = exc.message if status < 500 or status == 507 else "internal error"
        if status >= 500:
            log.error("request failed: %s", exc.message)
        return status, headers, error_body(message)
    log.exception("unexpected error while handling a request")
    return 500, {}, error_body("internal error")
