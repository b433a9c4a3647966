"""HTTPS client for the Nimbus API (stdlib only): HMAC, bearer or mTLS, one kept-alive connection.

The only place where error responses are turned back into NimbusError exceptions.

HTTP/1.1 is spoken directly over a TLS socket rather than through http.client, whose
import (email.parser & co.) cost the CLI ~8 ms of its start-up on every command. It speaks
only what the Nimbus API needs: one request at a time on a persistent connection,
Content-Length or chunked bodies, `Connection: close`, interim 1xx answers skipped.

A new connection is most of what a one-shot CLI command waits for, so opening one avoids
what it can without giving anything up (docs/performance.md, "What a new connection
costs"):
* TLS runs on `_ssl` and `_socket`, the C modules under `ssl` and `socket`, whose Python
  layers (enum conversions, selectors, base64) cost the CLI ~9 ms of import. ssl.SSLContext
  *is* `_ssl._SSLContext` plus enums: the defaults, the CA check and the hostname check all
  happen in C, identically. Where `_wrap_socket` is missing, the client falls back to ssl.py.
* an IP literal is connected to directly (no getaddrinfo); an ASCII name goes to
  getaddrinfo as bytes, so the idna codec (stringprep, unicodedata: ~2 ms) is not imported;
  OpenSSL checks the certificate against the same name or IP either way.
Annotation-only imports stay out of the run-time path.
"""

from __future__ import annotations

import _socket
import _ssl
import io
import json
import time

from nimbus.errors import ERROR_BY_STATUS, NimbusError, Throttled, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the CLI several ms of start-up; annotations are strings
    import ssl
    from collections.abc import Callable
    from typing import Any

# The C layer's own names, the same objects ssl and socket re-export.
SSLError = _ssl.SSLError
_TIMEOUTS = (TimeoutError, getattr(_socket, "timeout", TimeoutError))  # distinct before 3.10
_FAST = hasattr(_ssl, "_SSLContext") and hasattr(_ssl._SSLContext, "_wrap_socket")

MAX_LINE = 65536
MAX_HEADERS = 100
MAX_BODY = 64 * 1024 * 1024


class HmacAuth:
    """Signs each request with an access key (its secret never appears in repr)."""

    __slots__ = ("access_key", "secret_key")

    def __init__(self, access_key: str, secret_key: str) -> None:
        self.access_key = access_key
        self.secret_key = secret_key

    def __repr__(self) -> str:
        return f"HmacAuth(access_key={self.access_key!r})"

    def headers(self, method: str, path: str, body: bytes, now: float) -> dict[str, str]:
        from nimbus.security.hmac_sign import sign_headers

        return sign_headers(self.access_key, self.secret_key, method, path, body, now)


class BearerAuth:
    """Sends a JWT (never shown in repr)."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "BearerAuth(token=...)"

    def headers(self, method: str, path: str, body: bytes, now: float) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _configure(ctx: Any, ca_pem: str | None, cert_file: str | None,
               key_file: str | None) -> Any:
    ctx.minimum_version = _ssl.PROTO_TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = _ssl.CERT_REQUIRED
    if ca_pem:
        ctx.load_verify_locations(cadata=ca_pem)
    if cert_file and key_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


def tls_context(ca_pem: str | None, cert_file: str | None = None,
                key_file: str | None = None) -> ssl.SSLContext:
    """Verify the server against our CA only (never the system store, never TOFU)."""
    import ssl

    return _configure(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), ca_pem, cert_file, key_file)


def _client_context(ca_pem: str | None, cert_file: str | None, key_file: str | None) -> Any:
    """tls_context() without importing ssl.py: the same C context, configured the same way."""
    if not _FAST:
        return tls_context(ca_pem, cert_file, key_file)
    return _configure(_ssl._SSLContext(_ssl.PROTOCOL_TLS_CLIENT), ca_pem, cert_file, key_file)


def _ip_family(host: str) -> int | None:
    """AF_INET or AF_INET6 when `host` is an IP literal, else None (a name to resolve)."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return family
    return None


def _server_name(host: str) -> str:
    """The name OpenSSL verifies (and sends as SNI): ASCII as it is, else its IDNA form,
    exactly what ssl.py would pass (it too returns an ASCII name unchanged)."""
    return host if host.isascii() else host.encode("idna").decode("ascii")


class _Socket(_socket.socket):
    """The C socket, weakly referable as the TLS layer requires (socket.socket without
    its Python layer)."""

    __slots__ = ("__weakref__",)


def _tcp(family: int, addr: tuple[Any, ...], timeout: float, proto: int = 0) -> _Socket:
    sock = _Socket(family, _socket.SOCK_STREAM, proto)
    try:
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        sock.connect(addr)
    except BaseException:
        sock.close()
        raise
    return sock


def open_socket(host: str, port: int, timeout: float) -> _Socket:
    """A connected TCP socket with Nagle off (a request goes out in one write).

    An IP literal is connected to directly; a name is resolved (as bytes when ASCII: a str
    would be run through the idna codec) and its addresses are tried in turn.
    """
    family = _ip_family(host)
    if family is not None:
        return _tcp(family, (host, port), timeout)
    name = host.encode("ascii") if host.isascii() else host
    error: OSError = OSError(f"{host} has no address")
    for family, _, proto, _, addr in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM):
        try:
            return _tcp(family, addr, timeout, proto)
        except OSError as exc:
            error = exc
    raise error


class _TLSReader(io.RawIOBase):
    """Raw reads from a TLS connection, for io.BufferedReader."""

    def __init__(self, tls: Any) -> None:
        super().__init__()
        self.tls = tls

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return int(self.tls.read(len(buffer), buffer))
        except SSLError as exc:
            # TCP closed without a TLS close_notify: the end of the stream, as ssl.py's
            # default (suppress_ragged_eofs) reads it; any other error is raised.
            if exc.args and exc.args[0] == _ssl.SSL_ERROR_EOF:
                return 0
            raise


def split_url(base_url: str) -> tuple[str, int, str]:
    """https://HOST[:PORT][/prefix] -> (host, port, prefix); IPv6 hosts in brackets.

    No user info, query or fragment; the port, when given, is 1-65535. (Not urllib.parse:
    every CLI command checks its saved URL, and that import is a share of start-up.)
    """
    bad = NimbusError(f"API URL must look like https://HOST:PORT, got {base_url!r}")
    if not isinstance(base_url, str) or not base_url.lower().startswith("https://"):
        raise bad
    hostport, slash, path = base_url[len("https://"):].partition("/")
    if any(c in base_url for c in "@?#") or any(c.isspace() for c in base_url):
        raise bad
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise bad
        port_text = rest[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if not host or (port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536)):
        raise bad
    prefix = ("/" + path).rstrip("/") if slash else ""
    return host, int(port_text) if port_text else 443, prefix


class _Closed(Exception):
    """The server closed the connection before a complete response."""


class _Protocol(Exception):
    """The server's answer is not HTTP/1.x as we speak it."""


class _Connection:
    """One TLS connection (`tls`, over the TCP socket `raw`) and its buffered reader."""

    def __init__(self, raw: Any, tls: Any) -> None:
        self.raw = raw
        self.tls = tls
        self.reader = io.BufferedReader(_TLSReader(tls))
        self.used = False

    @classmethod
    def open(cls, host: str, port: int, context: Any, timeout: float) -> _Connection:
        raw = open_socket(host, port, timeout)
        try:
            if _FAST:  # the C object that ssl.SSLSocket wraps; it keeps only a weak reference
                tls = context._wrap_socket(raw, False, _server_name(host))
                tls.do_handshake()
                return cls(raw, tls)
            import socket

            plain = socket.socket(fileno=raw.detach())
        except BaseException:
            raw.close()
            raise
        try:
            plain.settimeout(timeout)  # wrap_socket copies it: the handshake's deadline
            sock = context.wrap_socket(plain, server_hostname=_server_name(host))
        except BaseException:
            plain.close()
            raise
        return cls(sock, sock)

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self.tls.write(view):]

    def close(self) -> None:
        for closer in (self.reader.close, self.raw.close):
            try:  # noqa: SIM105 - not contextlib.suppress: its import is ~1 ms of CLI start-up
                closer()
            except OSError:
                pass
        self.tls = None

    def line(self) -> bytes:
        data = self.reader.readline(MAX_LINE + 1)
        if len(data) > MAX_LINE:
            raise _Protocol("header line too long")
        return data

    def exactly(self, n: int) -> bytes:
        data = self.reader.read(n)
        if len(data) != n:
            raise _Closed
        return data

    def response(self, method: str) -> tuple[int, dict[str, str], bytes, bool]:
        """(status, lower-cased headers, body, keep-alive) of the next final response."""
        while True:
            status_line = self.line()
            if not status_line:
                raise _Closed
            version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise _Protocol(f"bad status line {status_line[:40]!r}")
            status = int(code)
            headers: dict[str, str] = {}
            for _ in range(MAX_HEADERS + 1):
                line = self.line()
                if line in (b"\r\n", b"\n"):
                    break
                if not line:
                    raise _Closed
                name, sep, value = line.decode("latin-1").partition(":")
                if not sep:
                    raise _Protocol("bad header line")
                headers[name.strip().lower()] = value.strip()
            else:
                raise _Protocol("too many headers")
            if 100 <= status < 200:  # interim (100 Continue): the real answer follows
                continue
            break
        keep = version != "HTTP/1.0" and "close" not in headers.get("connection", "").lower()
        if method == "HEAD" or status in (204, 304):
            return status, headers, b"", keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return status, headers, self._chunked(), keep
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > MAX_BODY:
                raise _Protocol("bad Content-Length")
            return status, headers, self.exactly(int(length)), keep
        body = self.reader.read(MAX_BODY + 1)  # no length: the body ends with the connection
        if len(body) > MAX_BODY:
            raise _Protocol("response too large")
        return status, headers, body, False

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self.line().split(b";", 1)[0].strip()
            if not size_text:
                raise _Closed
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _Protocol("bad chunk size") from None
            if size == 0:
                while self.line() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise _Protocol("response too large")
            parts.append(self.exactly(size))
            self.exactly(2)  # CRLF after each chunk


class ApiClient:
    """One base URL, one TLS context, one persistent connection (not thread-safe)."""

    def __init__(self, base_url: str, ca_pem: str | None, auth: Any = None,
                 cert_file: str | None = None, key_file: str | None = None,
                 timeout: float = 30.0, clock: Callable[[], float] = time.time,
                 context: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.prefix = split_url(base_url)
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.clock = clock
        self.context = context or _client_context(ca_pem, cert_file, key_file)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = f"{host}:{self.port}"
        self._conn: _Connection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, timeout: float) -> _Connection:
        if self._conn is None:
            self._conn = _Connection.open(self.host, self.port, self.context, timeout)
        self._conn.raw.settimeout(timeout)
        return self._conn

    def _head(self, method: str, path: str, headers: dict[str, str], length: int) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}",
                 f"Content-Length: {length}"]
        for name, value in headers.items():
            value = str(value)
            if any(c in name or c in value for c in "\r\n\0") or ":" in name:
                raise NimbusError(f"invalid HTTP header {name!r}")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def raw(self, method: str, path: str, body: Any = None, timeout: float | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """Send one request; retry once on a stale kept-alive connection."""
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        full_path = self.prefix + path
        if any(c in full_path for c in " \r\n\0"):
            raise NimbusError(f"invalid request path {full_path!r}")
        for attempt in (1, 2):
            hdrs = {"Content-Type": "application/json", "Accept": "application/json"}
            if self.auth is not None:
                hdrs.update(self.auth.headers(method, full_path, payload, self.clock()))
            hdrs.update(headers or {})
            head = self._head(method, full_path, hdrs, len(payload))
            reused = False
            try:
                conn = self._connection(timeout or self.timeout)
                reused = conn.used
                conn.used = True
                conn.send(head + payload)
                status, resp_headers, data, keep = conn.response(method)
            except _ssl.SSLCertVerificationError as exc:
                self.close()
                raise Unavailable(f"TLS verification of {self.base_url} failed: "
                                  f"{exc.verify_message}") from None
            except (_Closed, ConnectionResetError, BrokenPipeError, _ssl.SSLEOFError,
                    _ssl.SSLZeroReturnError):
                self.close()
                if attempt == 1 and reused:
                    continue
                raise Unavailable(f"the API at {self.base_url} closed the connection") from None
            except _TIMEOUTS:
                self.close()
                raise Unavailable(f"the API at {self.base_url} did not answer in time") from None
            except (OSError, SSLError, _Protocol) as exc:
                self.close()
                reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
                raise Unavailable(f"cannot reach the API at {self.base_url}: {reason}") from None
            except UnicodeError:  # a non-ASCII host name that IDNA cannot encode
                self.close()
                raise Unavailable(f"cannot reach the API at {self.base_url}: "
                                  f"invalid host name") from None
            if not keep:
                self.close()
            return status, resp_headers, data
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
