"""HTTPS client for the Nimbus API (stdlib only): HMAC, bearer or mTLS, one kept-alive connection.

The only place where error responses are turned back into NimbusError exceptions.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from nimbus.errors import ERROR_BY_STATUS, NimbusError, Throttled, Unavailable


@dataclass(frozen=True)
class HmacAuth:
    access_key: str
    secret_key: str

    def headers(self, method: str, path: str, body: bytes, now: float) -> dict[str, str]:
        from nimbus.security.hmac_sign import sign_headers

        return sign_headers(self.access_key, self.secret_key, method, path, body, now)


@dataclass(frozen=True)
class BearerAuth:
    token: str

    def headers(self, method: str, path: str, body: bytes, now: float) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def tls_context(ca_pem: str | None, cert_file: str | None = None,
                key_file: str | None = None) -> ssl.SSLContext:
    """Verify the server against our CA only (never the system store, never TOFU)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca_pem:
        ctx.load_verify_locations(cadata=ca_pem)
    if cert_file and key_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


class ApiClient:
    """One base URL, one TLS context, one persistent connection (not thread-safe)."""

    def __init__(self, base_url: str, ca_pem: str | None, auth: Any = None,
                 cert_file: str | None = None, key_file: str | None = None,
                 timeout: float = 30.0, clock: Callable[[], float] = time.time,
                 context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname:
            raise NimbusError(f"API URL must look like https://HOST:PORT, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 443
        self.prefix = parts.path.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.clock = clock
        self.context = context or tls_context(ca_pem, cert_file, key_file)
        self._conn: http.client.HTTPSConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, timeout: float) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=timeout)
        self._conn.timeout = timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        return self._conn

    def raw(self, method: str, path: str, body: Any = None, timeout: float | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """Send one request; retry once on a stale kept-alive connection."""
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        full_path = self.prefix + path
        for attempt in (1, 2):
            hdrs = {"Content-Type": "application/json", "Accept": "application/json"}
            if self.auth is not None:
                hdrs.update(self.auth.headers(method, full_path, payload, self.clock()))
            hdrs.update(headers or {})
            conn = self._connection(timeout or self.timeout)
            fresh = conn.sock is None
            try:
                conn.request(method, full_path, body=payload or None, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
            except ssl.SSLCertVerificationError as exc:
                self.close()
                raise Unavailable(f"TLS verification of {self.base_url} failed: "
                                  f"{exc.verify_message}") from None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                self.close()
                if attempt == 1 and not fresh:
                    continue
                raise Unavailable(f"the API at {self.base_url} closed the connection") from None
            except TimeoutError:
                self.close()
                raise Unavailable(f"the API at {self.base_url} did not answer in time") from None
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                self.close()
                reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
                raise Unavailable(f"cannot reach the API at {self.base_url}: {reason}") from None
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, body: Any = None,
                timeout: float | None = None) -> Any:
        """Send a request and return the response's `data`, or raise the matching error."""
        status, headers, data = self.raw(method, path, body, timeout)
        return decode_response(status, headers, data)

    def text(self, path: str) -> str:
        status, headers, data = self.raw("GET", path)
        if status != 200:
            decode_response(status, headers, data)
        return data.decode()


def decode_response(status: int, headers: dict[str, str], data: bytes) -> Any:
    try:
        doc = json.loads(data) if data else {}
    except ValueError:
        doc = {}
    if 200 <= status < 300:
        return doc.get("data") if isinstance(doc, dict) else None
    message = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(message, str):
        message = f"the API answered HTTP {status}"
    if status == 429:
        raise Throttled(message, int(headers.get("retry-after", "1") or 1))
    raise ERROR_BY_STATUS.get(status, Unavailable)(message)
