"""cheroot's connection and request, adapted: a read-ahead buffer the gate fills, JSON errors.

cheroot reads a connection through a buffered reader (pure-Python `_pyio`, like its own
StreamReader); ReadAhead lets the gate (nimbus.server.http.gate) put the bytes it read without
blocking into that same buffer, so the worker that parses the request later finds all of it
there and never waits on the network. Every error the HTTP layer itself answers (cheroot's
400/405/408/413/414/501/505 and the gate's 408/413/431) carries the API's `{"error": ...}`.
"""

from __future__ import annotations

import _pyio
import contextlib
import io
import json
import socket
import ssl
import threading
from http import HTTPStatus
from typing import Any

from cheroot.server import HTTPConnection, HTTPRequest

from nimbus.server.http.framing import RequestScanner

# Where a connection is; only the thread that owns it (the gate or one worker) changes it.
HANDSHAKE, HEAD, IDLE, BUSY, DRAIN = "handshake", "head", "idle", "busy", "drain"
_RECV_SIZE = 65536
_TLS_RECORD = 16384  # a TLS recv returns at most one record of plaintext


def error_response(status: int, message: str, protocol: str = "HTTP/1.1") -> bytes:
    """A complete HTTP response with the JSON error envelope; the connection closes after it."""
    body = json.dumps({"error": message}).encode()
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return (f"{protocol} {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class ReadAhead(_pyio.BufferedReader):
    """cheroot's StreamReader plus append(): bytes read elsewhere, served before the socket."""

    def __init__(self, sock: Any, bufsize: int = io.DEFAULT_BUFFER_SIZE) -> None:
        super().__init__(socket.SocketIO(sock, "rb"), bufsize)
        self.bytes_read = 0

    def has_data(self) -> bool:
        return len(self._read_buf) > self._read_pos  # type: ignore[attr-defined]

    def buffered(self) -> int:
        return len(self._read_buf) - self._read_pos  # type: ignore[attr-defined]

    def unread(self) -> bytes:
        return self._read_buf[self._read_pos:]  # type: ignore[attr-defined]

    def append(self, data: bytes) -> None:
        with self._read_lock:  # type: ignore[attr-defined]
            self._read_buf = self._read_buf[self._read_pos:] + data  # type: ignore[has-type]
            self._read_pos = 0

    def discard(self) -> None:
        with self._read_lock:  # type: ignore[attr-defined]
            self._read_buf, self._read_pos = b"", 0

    def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        """A line straight from the buffer when it holds one (the gate buffered the whole
        request): _pyio's readline costs a peek and a read per call, 7-9 calls a request."""
        limit = -1 if size is None else size
        with self._read_lock:  # type: ignore[attr-defined]
            buf, pos = self._read_buf, self._read_pos  # type: ignore[attr-defined]
            end = buf.find(b"\n", pos) + 1
            if end and (limit < 0 or end - pos <= limit):
                self._read_pos = end
                return buf[pos:end]  # type: ignore[no-any-return]
        return super().readline(limit)


class SendAll:
    """The response side of a connection, straight to the socket (cheroot's writer copies
    every write twice in pure Python). A response head is held back and goes out in one
    TLS write with the first piece of the body: one syscall and TLS record less."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._head = b""
        self._holding = False
        self.bytes_written = 0

    def hold_next(self) -> None:
        self._holding, self._head = True, b""

    def write(self, data: bytes) -> int:
        if self._holding:
            self._holding, self._head = False, bytes(data)
            return len(data)
        if self._head:
            data, self._head = self._head + data, b""
        self._sock.sendall(data)
        self.bytes_written += len(data)
        return len(data)

    def flush(self) -> None:
        self._holding = False
        if self._head:
            self.write(b"")

    def close(self) -> None:
        self._head, self._holding = b"", False


class JsonErrorRequest(HTTPRequest):
    """cheroot's request, but its own error answers use the API's JSON envelope."""

    def simple_response(self, status: Any, msg: Any = "") -> None:
        code = int(str(status)[:3])
        if code in (413, 414):
            self.close_connection = True
        message = msg.decode("latin-1") if isinstance(msg, bytes) else str(msg)
        if not message:
            message = str(status)[4:].strip().lower() or "request failed"
        with contextlib.suppress(OSError):  # when the client is gone, there is no one to tell
            self.conn.wfile.write(error_response(code, message, self.server.protocol))

    def send_headers(self) -> None:
        self.conn.wfile.hold_next()  # sent with the body's first write (SendAll)
        super().send_headers()

    def respond(self) -> None:
        super().respond()
        self.conn.wfile.flush()  # a response without a body: its head is still held


def _files(sock: Any, mode: str = "r", bufsize: int = io.DEFAULT_BUFFER_SIZE) -> Any:
    return ReadAhead(sock, bufsize) if "r" in mode else SendAll(sock)


class Connection(HTTPConnection):
    """One client connection: its phase, deadline, request scanner and per-source slot."""

    RequestHandlerClass = JsonErrorRequest

    def __init__(self, server: Any, sock: Any, makefile: Any = _files) -> None:
        super().__init__(server, sock, _files)
        self.phase = HANDSHAKE
        self.deadline = 0.0
        self.scanner = RequestScanner()
        self.continue_sent = False
        self.source = ""
        self.last_put = 0.0
        self.served = 0
        self._release: Any = None
        self._closed = threading.Lock()

    def holds_slot(self, source: str, release: Any) -> None:
        """Count this connection against `source`; `release(source)` runs once, on close."""
        self.source, self._release = source, release

    def new_request(self) -> None:
        self.scanner = RequestScanner()
        self.continue_sent = False

    def pull(self, limit: int) -> bool:
        """Read what has arrived, without blocking (the socket is non-blocking), until `limit`
        bytes are buffered; False once the client has closed or reset the connection."""
        while self.rfile.buffered() < limit:
            try:
                chunk = self.socket.recv(_RECV_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError,
                    InterruptedError):
                return True
            except OSError:
                return False
            if not chunk:
                return False
            self.rfile.append(chunk)
            if len(chunk) < _TLS_RECORD and not self.socket.pending():
                return True  # drained (a recv that would fail costs an exception)
        return True

    def send_now(self, data: bytes) -> None:
        """Best effort on a non-blocking socket: a small answer fits any empty send buffer."""
        with contextlib.suppress(OSError, ValueError):
            self.socket.send(data)

    def close(self) -> None:
        if not self._closed.acquire(blocking=False):
            return
        try:
            super().close()
        except OSError:
            pass
        finally:
            if self._release is not None:
                self._release(self.source)
