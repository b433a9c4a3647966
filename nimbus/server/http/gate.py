"""The connection layer no client can stall: cheroot's selector thread, rebuilt as a gate.

cheroot's ConnectionManager accepts on its one selector thread and does the TLS handshake
right there (blocking, 65 s timeout), then hands every new connection to a worker that waits
for a request line. One silent client therefore stopped every other; 64 idle ones took all the
workers. The gate keeps cheroot's thread pool, request parsing and WSGI gateway, and replaces
what happens before a worker is committed:

* accept never blocks; a source address with `per_source` open connections is refused, and
  at `max_connections` in total the oldest waiting connection of the biggest source goes
  (budget.Ledger);
* the TLS handshake and the read of the complete request (head and body) are non-blocking,
  driven by the selector, and must finish within `request_timeout` of the connection opening
  (or of the first byte of a later request on a kept-alive connection), else 408 (or a silent
  close while the handshake is unfinished);
* only a complete request goes to a worker, and only its bytes (conn.take_request), so
  workers never wait on the network for input;
* a response the client does not read at once is sent from here (WRITE), so workers never
  wait for a client to read either;
* unfinished input and unread output count against a per-source and a total byte budget
  (503 past it);
* framing limits (16 KiB head -> 431, 1 MiB body -> 413, bad framing -> 400) are answered
  here, in JSON, without a worker;
* a kept-alive connection idles here, at no cost but a file descriptor, for `idle_timeout`.

See docs/decisions.md ("The connection layer").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import selectors
import socket
import ssl
import struct
import termios
import time
from collections import deque
from typing import Any

from cheroot.connections import ConnectionManager, prevent_socket_inheritance

from nimbus.server.http.budget import Ledger, Limits
from nimbus.server.http.conn import (
    BUSY,
    DRAIN,
    HANDSHAKE,
    HEAD,
    IDLE,
    PARKED,
    WRITE,
    Connection,
    error_response,
)
from nimbus.server.http.framing import BODY_LIMIT, HEAD_LIMIT, FrameError
from nimbus.server.ratelimit import source_key  # an IPv6 client counts as its /64

log = logging.getLogger("nimbus.httpd")

SWEEP_SEC = 0.25      # how often deadlines are checked (their granularity)
DRAIN_SEC = 2.0       # after an error answer, read and drop the rest for this long, then close
ACCEPT_BATCH = 64     # connections accepted per wake-up of the listening socket
READ_LIMIT = HEAD_LIMIT + BODY_LIMIT + 64 * 1024  # the framing refuses before this is reached
# A pipelining client gets its next request answered only once no more than this much of its
# earlier answers is still unread in the kernel: the work done for a client that never reads
# is bounded by what it reads, not by the size of socket buffers (several MB on loopback).
UNREAD_LIMIT = 256 * 1024


__all__ = ["READ_LIMIT", "Gate", "Limits", "behind"]


class Gate(ConnectionManager):
    """Replaces cheroot's ConnectionManager (server._connections) once the server is prepared."""

    def __init__(self, server: Any, limits: Limits) -> None:
        super().__init__(server)  # registers the listening socket with the selector
        server.socket.setblocking(False)
        self.limits = limits
        self.ledger = Ledger(limits, BUSY)
        self._parking: deque[Connection] = deque()  # appended by workers, taken by the gate
        self._parked: dict[Connection, int] = {}    # gate thread only: conn -> unread bytes

    @property
    def can_add_keepalive_connection(self) -> bool:
        return True  # idle connections cost the gate a descriptor, not a worker

    # -- the selector loop --------------------------------------------------------------

    def _run(self, expiration_interval: float) -> None:
        last_sweep = time.monotonic()
        while not self._stop_requested:
            try:
                ready = list(self._selector.select(timeout=SWEEP_SEC))
            except OSError:
                self._remove_invalid_sockets()
                continue
            for fd, conn in ready:
                if conn is self.server:
                    self._accept()
                else:
                    self._advance(fd, conn)
            now = time.monotonic()
            if now - last_sweep >= SWEEP_SEC:
                self._sweep(now)
                last_sweep = now

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.server.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("http: cannot accept connections: %s", exc.strerror)
                    time.sleep(0.05)  # the backlog stays readable; do not spin on it
                return
            source = source_key(addr[0]) if isinstance(addr, tuple) else ""
            if not (self.ledger.admit(source) and self._make_room()):
                log.debug("http: refused a connection from %s (connection limits)", source)
                sock.close()
                continue
            try:
                sock.setblocking(False)
                prevent_socket_inheritance(sock)
                tls = self.server.ssl_adapter.context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False)
                conn = self.server.ConnectionClass(self.server, tls)
            except (OSError, ValueError) as exc:
                log.debug("http: dropping a new connection from %s: %s", source, exc)
                sock.close()
                continue
            conn.holds_slot(source, self.ledger.release)
            self.ledger.track(conn)
            conn.remote_addr, conn.remote_port = addr[0], addr[1]
            conn.phase = HANDSHAKE
            conn.deadline = time.monotonic() + self.limits.request_timeout
            self._selector.register(tls.fileno(), selectors.EVENT_READ, data=conn)

    def _make_room(self) -> bool:
        """At max_connections, push out the oldest waiting connection of the biggest source."""
        if not self.ledger.full():
            return True
        victim = self.ledger.victim()
        if victim is None:
            return False
        log.debug("http: at %d connections; closing one from %s", self.ledger.total_connections,
                  victim.source)
        self._drop(victim.socket.fileno(), victim)
        return True

    def _advance(self, fd: int, conn: Connection) -> None:
        try:
            if conn.phase == HANDSHAKE and not self._handshake(fd, conn):
                return
            if conn.phase == WRITE:
                self._write(fd, conn)
                return
            if conn.phase == DRAIN:
                alive = conn.pull(READ_LIMIT)
                conn.discard()
                if not alive:
                    self._drop(fd, conn)
                return
            if not conn.pull(READ_LIMIT):
                self._drop(fd, conn)  # closed or reset by the client
                return
            if conn.phase == IDLE and conn.has_input():
                conn.phase = HEAD
                conn.deadline = time.monotonic() + self.limits.request_timeout
            self._offer(conn, fd)
        except Exception as exc:  # noqa: BLE001 - one connection must never stop the gate
            log.debug("http: dropping a connection from %s: %r", conn.source, exc)
            self._drop(fd, conn)

    def _write(self, fd: int, conn: Connection) -> None:
        """Send more of a response the client is slow to read; then its next request."""
        before = conn.wfile.pending
        done = conn.wfile.send_some()
        if conn.wfile.pending < before:  # progress renews the deadline
            conn.deadline = time.monotonic() + self.limits.request_timeout
        if not done:
            self.ledger.charge(conn, conn.wfile.pending)
            self._watch(fd, conn, selectors.EVENT_READ if conn.wfile.wants_read
                        else selectors.EVENT_WRITE)
            return
        if conn.close_after:
            self._drop(fd, conn)
            return
        self.ledger.charge(conn, 0)
        self._watch(fd, conn, selectors.EVENT_READ)
        self._next_request(conn, fd)

    def _handshake(self, fd: int, conn: Connection) -> bool:
        """Drive the TLS handshake one step; True once it is done (the connection reads on)."""
        try:
            conn.socket.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(fd, conn, selectors.EVENT_READ)
            return False
        except ssl.SSLWantWriteError:
            self._watch(fd, conn, selectors.EVENT_WRITE)
            return False
        except ssl.SSLError as exc:
            if "http request" in str(exc):  # plain HTTP on the TLS port: say so, in plain HTTP
                _send_plain(fd, error_response(
                    400, "this port speaks HTTPS only; use an https:// URL"))
            log.debug("http: TLS handshake with %s failed: %s", conn.source, exc)
            self._drop(fd, conn)
            return False
        except OSError:
            self._drop(fd, conn)
            return False
        self._watch(fd, conn, selectors.EVENT_READ)
        conn.ssl_env = self.server.ssl_adapter.get_environ(conn.socket)
        conn.phase = HEAD
        return True

    def _watch(self, fd: int, conn: Connection, events: int) -> None:
        with self._selector._lock:
            key = self._selector._selector.get_map().get(fd)
            if key is not None and key.events != events:
                self._selector._selector.modify(fd, events, conn)

    def _sweep(self, now: float) -> None:
        self._unpark(now)
        expired = [(fd, conn) for fd, conn in self._selector.connections
                   if conn is not self.server and conn.deadline < now]
        for fd, conn in expired:
            if conn.phase == HEAD:
                conn.send_now(error_response(408, "the request did not arrive in time"))
            self._drop(fd, conn)  # a response unread for a whole deadline goes too

    def _drop(self, fd: int, conn: Connection) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)
        conn.shutdown()

    # -- handing over: from the gate, or from a worker that just answered -----------------

    def _offer(self, conn: Connection, fd: int | None) -> None:
        """Hand `conn` to a worker if a complete request is buffered, else wait for more.

        fd is the registered descriptor when the gate calls, None when a worker does.
        """
        try:
            end = conn.scanner.feed(conn.inbox)
        except FrameError as exc:
            self._refuse(conn, fd, exc)
            return
        if end is None:
            if not self.ledger.charge(conn, conn.buffered()):
                self._refuse(conn, fd, FrameError(
                    503, "too much unfinished input is waiting from your address or in "
                         "total; retry later"))
                return
            if conn.scanner.expect_continue and not conn.continue_sent and conn.scanner.head_end:
                conn.continue_sent = True
                conn.send_now(b"HTTP/1.1 100 Continue\r\n\r\n")
            if fd is None:
                self._selector.register(conn.socket.fileno(), selectors.EVENT_READ, data=conn)
            return
        if fd is not None:
            self._selector.unregister(fd)
        self.ledger.charge(conn, 0)
        conn.take_request(end)
        conn.phase = BUSY
        self.server.process_conn(conn)

    def request_ready(self, conn: Connection) -> bool:
        """For a worker that read ahead: is a complete request buffered? (If so, it is now
        the worker's to answer.) Refusals are left to put(), which answers them."""
        try:
            end = conn.scanner.feed(conn.inbox)
        except FrameError:
            return False
        if end is None:
            return False
        conn.take_request(end)
        conn.phase = BUSY
        return True

    def _refuse(self, conn: Connection, fd: int | None, exc: FrameError) -> None:
        """Answer, then read and drop what the client still sends for a moment: closing on
        unread input would reset the connection and could destroy the answer in flight."""
        conn.send_now(error_response(exc.status, exc.message))
        with contextlib.suppress(OSError):  # FIN after the answer (TLS stays as it is)
            socket.socket.shutdown(conn.socket, socket.SHUT_WR)
        conn.discard()
        self.ledger.charge(conn, 0)
        conn.phase = DRAIN
        conn.deadline = time.monotonic() + DRAIN_SEC
        if fd is None:
            self._selector.register(conn.socket.fileno(), selectors.EVENT_READ, data=conn)

    def put(self, conn: Connection) -> None:
        """A worker is done with a request on a kept-alive connection (cheroot's put()), or
        closes one whose response is not all out yet (conn.close)."""
        conn.last_used = time.time()
        try:
            if conn.wfile.pending:  # the client is slow to read: the gate sends the rest
                conn.phase = WRITE
                conn.deadline = time.monotonic() + self.limits.request_timeout
                if not self.ledger.charge(conn, conn.wfile.pending):
                    log.debug("http: dropping an unread response to %s (over budget)",
                              conn.source)
                    conn.shutdown()
                    return
                self._selector.register(conn.socket.fileno(), selectors.EVENT_WRITE, data=conn)
                return
            self._next_request(conn, None)
        except Exception as exc:  # noqa: BLE001 - the worker must survive a broken client
            log.debug("http: dropping a kept-alive connection: %r", exc)
            conn.shutdown()

    def _next_request(self, conn: Connection, fd: int | None) -> None:
        if conn.has_input():  # the next request (or part of it) is already here
            if behind(conn):
                self._park(conn, fd)
                return
            if conn.phase != HEAD:
                conn.phase = HEAD
                conn.deadline = time.monotonic() + self.limits.request_timeout
        else:
            conn.phase = IDLE
            conn.deadline = time.monotonic() + self.limits.idle_timeout
        self._offer(conn, fd)

    def _park(self, conn: Connection, fd: int | None) -> None:
        """Hold a pipelining client's next request until it has read its earlier answers."""
        if fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fd)
        conn.phase = PARKED
        conn.deadline = time.monotonic() + self.limits.request_timeout
        self._parking.append(conn)

    def _unpark(self, now: float) -> None:
        while self._parking:
            conn = self._parking.popleft()
            self._parked[conn] = unread(conn.socket)
        for conn, before in list(self._parked.items()):
            left = unread(conn.socket) if not conn.closed else 0
            if conn.closed or conn.phase != PARKED:
                del self._parked[conn]
            elif left <= UNREAD_LIMIT:
                del self._parked[conn]
                conn.phase = HEAD
                conn.deadline = now + self.limits.request_timeout
                self._offer(conn, None)
            elif left < before:  # it reads: progress renews the deadline
                self._parked[conn] = left
                conn.deadline = now + self.limits.request_timeout
            elif conn.deadline < now:
                del self._parked[conn]
                conn.shutdown()


def unread(sock: Any) -> int:
    """Bytes sent on `sock` that the peer has not acknowledged yet (the kernel's send queue)."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                                   b"\0\0\0\0"))[0])
    except (OSError, ValueError):
        return 0


def behind(conn: Connection) -> bool:
    """Is a pipelining client too far behind in reading for its next request to be served?"""
    return unread(conn.socket) > UNREAD_LIMIT


def _send_plain(fd: int, data: bytes) -> None:
    import os

    with contextlib.suppress(OSError):
        os.write(fd, data)
