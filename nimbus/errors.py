"""Domain errors shared by server, agent and CLI; each carries its HTTP status."""

from __future__ import annotations


class NimbusError(Exception):
    """Base class: a readable, one-line message that is safe to show a user."""

    status = 500
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadRequest(NimbusError):
    status = 400


class Unauthorized(NimbusError):
    status = 401
    exit_code = 3


class Forbidden(NimbusError):
    status = 403
    exit_code = 3


class NotFound(NimbusError):
    status = 404
    exit_code = 4


class Conflict(NimbusError):
    status = 409
    exit_code = 5


class PayloadTooLarge(NimbusError):
    status = 413


class Throttled(NimbusError):
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class Unavailable(NimbusError):
    """The API could not be reached (network, TLS) or answered 5xx."""

    status = 503
    exit_code = 2


class ConfigError(NimbusError):
    """Local configuration or files are missing, unreadable or unsafe."""

    status = 500
    exit_code = 6


class StoreError(NimbusError):
    status = 500
    exit_code = 7


class DiskFull(StoreError):
    """A write failed because the file system (or the quota) is full; nothing was changed."""

    status = 507
    exit_code = 8


ERROR_BY_STATUS: dict[int, type[NimbusError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    507: DiskFull,
}
