"""cheroot's connection and request, adapted: the gate's input buffer, exactly one request's
bytes for the worker, output that never blocks a worker, JSON errors.

The gate (nimbus.server.http.gate) reads a connection without blocking into `inbox` until the
framing says a request is complete; `take_request` then hands cheroot that request's bytes and
nothing more (an in-memory reader), so whatever cheroot might read differently from the gate
ends in an error answer, never in a worker waiting on the network or eating the next request.
Responses go out through `Outbox`: what the socket does not take at once is queued and the gate
sends it when the client reads, so a client that never reads cannot keep a worker either. Every
error the HTTP layer itself answers (cheroot's 400/405/408/413/414/501/505 and the gate's
408/413/431/503) carries the API's `{"error": ...}`.
"""

from __future__ import annotations

import contextlib
import io
import json
import ssl
import threading
from collections import deque
from http import HTTPStatus
from typing import Any

from cheroot.server import HTTPConnection, HTTPRequest

from nimbus.server.http.framing import RequestScanner

# Where a connection is; only the thread that owns it (the gate or one worker) changes it.
HANDSHAKE, HEAD, IDLE, BUSY, DRAIN, WRITE = "handshake", "head", "idle", "busy", "drain", "write"
PARKED = "parked"  # a pipelining client must read its earlier answers first (gate.behind)
_RECV_SIZE = 65536
_TLS_RECORD = 16384  # a TLS recv returns at most one record of plaintext
_SEND_SIZE = 65536   # one non-blocking send; an SSL retry must repeat exactly these bytes
_COALESCE = 16384    # a small write waits for the next one: head and body in one TLS record
_COMPACT = 65536     # consumed input is cut off once this much (and no less than the rest)
_WOULD_BLOCK = (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError)


def error_response(status: int, message: str, protocol: str = "HTTP/1.1") -> bytes:
    """A complete HTTP response with the JSON error envelope; the connection closes after it."""
    body = json.dumps({"error": message}).encode()
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return (f"{protocol} {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class Outbox:
    """cheroot's wfile on a non-blocking socket: never waits for the client to read."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._held = b""   # a small write kept back to go out with the next one
        self._queue: deque[memoryview] = deque()
        self.pending = 0   # bytes queued that the socket has not taken yet
        self.wants_read = False  # TLS needs input before it can send more (rare)
        self.bytes_written = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        n = len(data)
        if not n:
            return 0
        if self._held:
            if n + len(self._held) <= _SEND_SIZE:  # head and body in one send: one TLS write
                data, self._held = self._held + bytes(data), b""
            else:
                self._queue.append(memoryview(self._held))
                self.pending, self._held = self.pending + len(self._held), b""
        elif n <= _COALESCE and not self.pending:
            self._held = bytes(data)
            return n
        blocked = bool(self._queue)
        self._queue.append(memoryview(data))
        self.pending += len(data)  # held bytes included: `pending` is what the socket owes
        if not blocked:
            self.send_some()
        return n

    def flush(self) -> None:
        self.end_response()

    def end_response(self) -> bool:
        """Send what the socket takes now, held bytes included; True once nothing is left."""
        if self._held:
            self._queue.append(memoryview(self._held))
            self.pending, self._held = self.pending + len(self._held), b""
        return self.send_some()

    def send_some(self) -> bool:
        """Without blocking; True once the queue is empty. OSError: the client is gone."""
        self.wants_read = False
        while self._queue:
            head = self._queue[0]
            try:
                sent = self.sock.send(head[:_SEND_SIZE])
            except _WOULD_BLOCK as exc:
                self.wants_read = isinstance(exc, ssl.SSLWantReadError)
                return False
            self.bytes_written += sent
            self.pending -= sent
            if sent >= len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[sent:]
        return True

    def close(self) -> None:
        self.closed = True  # the queue stays: the gate may still be sending it


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


def _files(sock: Any, mode: str = "r", bufsize: int = 0) -> Any:
    return io.BytesIO() if "r" in mode else Outbox(sock)


class Connection(HTTPConnection):
    """One client connection: its input, phase, deadline, request scanner and per-source slot."""

    RequestHandlerClass = JsonErrorRequest

    def __init__(self, server: Any, sock: Any, makefile: Any = _files) -> None:
        super().__init__(server, sock, _files)
        self.inbox = bytearray()  # what the gate read; requests are cut from inpos on
        self.inpos = 0
        self.phase = HANDSHAKE
        self.deadline = 0.0
        self.scanner = RequestScanner()
        self.continue_sent = False
        self.close_after = False  # WRITE: close once the queued output is out
        self.charged = 0          # bytes this connection holds against its source's budget
        self.source = ""
        self.last_put = 0.0
        self._release: Any = None
        self._closed = threading.Lock()

    def holds_slot(self, source: str, release: Any) -> None:
        """Count this connection against `source`; `release(self)` runs once, on close."""
        self.source, self._release = source, release

    def buffered(self) -> int:
        return len(self.inbox) - self.inpos

    def has_input(self) -> bool:
        return len(self.inbox) > self.inpos

    def take_request(self, end: int) -> None:
        """The complete request inbox[inpos:end] becomes all that cheroot can read."""
        with memoryview(self.inbox) as view:
            self.rfile = io.BytesIO(bytes(view[self.inpos:end]))
        if end >= len(self.inbox):
            self.inbox.clear()
            end = 0
        elif end >= _COMPACT and end >= len(self.inbox) - end:
            # Amortised: the bytes shifted are never more than those consumed since the
            # last cut, so a pipeline costs what it holds, not its square.
            del self.inbox[:end]
            end = 0
        self.inpos = end
        self.scanner = RequestScanner(end)
        self.continue_sent = False

    def discard(self) -> None:
        self.inbox.clear()
        self.inpos = 0
        self.scanner = RequestScanner()

    def pull(self, limit: int) -> bool:
        """Read what has arrived, without blocking (the socket is non-blocking), until `limit`
        bytes are buffered; False once the client has closed or reset the connection."""
        while self.buffered() < limit:
            try:
                chunk = self.socket.recv(_RECV_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError,
                    InterruptedError):
                return True
            except OSError:
                return False
            if not chunk:
                return False
            self.inbox += chunk
            if len(chunk) < _TLS_RECORD and not self.socket.pending():
                return True  # drained (a recv that would fail costs an exception)
        return True

    def send_now(self, data: bytes) -> None:
        """Best effort on a non-blocking socket: a small answer fits any empty send buffer."""
        with contextlib.suppress(OSError, ValueError):
            self.socket.send(data)

    def communicate(self) -> bool:
        keep = bool(super().communicate())
        try:
            self.wfile.end_response()
        except (OSError, ValueError):
            return False
        return keep

    def close(self) -> None:
        """cheroot's worker closes a connection it does not keep: queued output first goes out
        from the gate (the client may be slow to read it; no worker waits for that)."""
        if self.phase == BUSY and self.wfile.pending:
            self.close_after = True
            self.server._connections.put(self)
            return
        self.shutdown()

    @property
    def closed(self) -> bool:
        return self._closed.locked()

    def shutdown(self) -> None:
        if not self._closed.acquire(blocking=False):
            return
        try:
            super().close()
        except OSError:
            pass
        finally:
            if self._release is not None:
                self._release(self)
