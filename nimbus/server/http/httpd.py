"""cheroot over TLS behind the gate: optional client certificates, many agents, quiet logs."""

from __future__ import annotations

import logging
import resource
import select
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from cheroot import wsgi

from nimbus.server.http.conn import HEAD, Connection
from nimbus.server.http.framing import BODY_LIMIT, HEAD_LIMIT
from nimbus.server.http.gate import READ_LIMIT, Gate, Limits, behind

log = logging.getLogger("nimbus.httpd")


def server_tls_context(cert: Path, key: Path, ca_file: Path) -> ssl.SSLContext:
    """TLS 1.2+; a client certificate is optional, but if sent it must chain to our CA.

    No TLS 1.3 session tickets: no Nimbus client resumes a session (the CLI makes one
    connection per run, agents keep theirs open), and the two tickets OpenSSL sends by
    default cost every new connection a few hundred microseconds: the server encrypts
    them, and the client decrypts and parses them before it can read its first answer.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.num_tickets = 0
    return ctx


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _context_adapter(context: ssl.SSLContext) -> Any:
    """cheroot's builtin adapter, but with our own SSLContext (mTLS optional, TLS 1.2+)."""
    from cheroot.ssl import Adapter
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    class ContextAdapter(BuiltinSSLAdapter):
        def __init__(self) -> None:
            # Skip BuiltinSSLAdapter.__init__: it builds its own context from file names.
            Adapter.__init__(self, "", "")
            self._server_env: dict[str, str] = {}
            # Not through cheroot's `context` setter: it installs a Python SNI callback, and
            # CPython decodes the server name as ASCII before calling it, so a client sending
            # a non-ASCII name got an alert and wrote a traceback to stderr on every
            # handshake. The API does not use SNI: OpenSSL ignores it without a callback.
            self._context = context
            context.sni_callback = None

        def get_environ(self, sock: Any) -> dict[str, str]:
            return tls_environ(sock)

    return ContextAdapter()


def tls_environ(sock: ssl.SSLSocket) -> dict[str, str]:
    """The WSGI entries of a TLS connection that the API reads, once per connection.

    Not cheroot's full mod_ssl set: that walks every cipher of the context and parses the
    client certificate into a dict of strings (with strptime) on each new connection.
    SSL_CLIENT_CERT is set only for a certificate OpenSSL verified against our CA, exactly
    when cheroot set it: getpeercert() is empty unless verification succeeded.
    """
    name, protocol, _bits = sock.cipher() or ("", "", 0)
    env = {"wsgi.url_scheme": "https", "HTTPS": "on", "SSL_PROTOCOL": str(protocol),
           "SSL_CIPHER": str(name), "SSL_CLIENT_VERIFY": "NONE"}
    der = sock.getpeercert(binary_form=True)
    if der and sock.getpeercert():
        env["SSL_CLIENT_VERIFY"] = "SUCCESS"
        env["SSL_CLIENT_CERT"] = ssl.DER_cert_to_PEM_cert(der).strip()
    return env


# A worker that just answered waits this long for the same client's next request before
# handing the connection back to the gate: a busy keep-alive client then skips two thread
# hand-offs per request, which is most of the server's CPU per request. The next request is
# read exactly as the gate reads it (non-blocking, complete before it is parsed), so a client
# that sends half a request here costs the worker LINGER_SEC, not a timeout.
LINGER_SEC = 0.002
MAX_INLINE_REQUESTS = 32
BUSY_GAP_SEC = 0.05


def _readable(sock: Any, timeout: float) -> bool:
    if getattr(sock, "pending", None) and sock.pending():
        return True
    return bool(select.select([sock], [], [], timeout)[0])


def _lingering_put_conn(server: Any) -> Any:
    def put_conn(conn: Connection) -> None:
        if not server.ready:
            conn.shutdown()
            return
        gate: Gate = server._connections
        # Only connections that are busy right now (their previous request ended moments
        # ago) are worth a wait; an agent heartbeating every few seconds never is.
        now = time.monotonic()
        busy = now - conn.last_put < BUSY_GAP_SEC
        conn.last_put = now
        try:
            for _ in range(MAX_INLINE_REQUESTS if busy else 0):
                if not server.ready or conn.wfile.pending:
                    break  # an unread response goes to the gate, which sends the rest
                had_data = conn.has_input()
                if had_data and behind(conn):
                    break  # it has not read its earlier answers: the gate parks it
                if not (had_data or _readable(conn.socket, LINGER_SEC)):
                    break
                if not conn.pull(READ_LIMIT):
                    conn.shutdown()
                    return
                if not had_data:  # the first bytes of this request: its deadline starts
                    conn.phase = HEAD
                    conn.deadline = time.monotonic() + gate.limits.request_timeout
                if not gate.request_ready(conn):
                    break  # incomplete or refused: the gate takes it from here
                if not conn.communicate():
                    conn.close()
                    return
        except Exception as exc:  # noqa: BLE001 - an error here must not kill the worker
            log.debug("http: dropping a kept-alive connection: %s", exc)
            conn.shutdown()
            return
        gate.put(conn)

    return put_conn


class _Server(wsgi.Server):  # type: ignore[misc]
    """cheroot's WSGI server with nimbus's connections and its gate in place of the
    ConnectionManager."""

    ConnectionClass = Connection
    limits = Limits()

    def prepare(self) -> None:
        super().prepare()
        replaced = self._connections
        self._connections = Gate(self, self.limits)
        replaced._selector.close()


class ApiServer:
    """Runs the WSGI app in a cheroot thread pool until stop() is called."""

    def __init__(self, app: Any, host: str, port: int, context: ssl.SSLContext,
                 threads: int = 64, max_threads: int = 512, limits: Limits | None = None
                 ) -> None:
        raise_fd_limit()
        limits = limits or Limits()
        # `timeout` is what cheroot announces in Keep-Alive headers; the gate enforces it.
        self.server = _Server((host, port), app, numthreads=threads, max=max_threads,
                              request_queue_size=1024, timeout=int(limits.idle_timeout),
                              shutdown_timeout=3, server_name="nimbus")
        self.server.limits = limits
        # The gate frames requests first (431/413 in JSON); these only back it up.
        self.server.max_request_header_size = HEAD_LIMIT + 1024
        self.server.max_request_body_size = BODY_LIMIT
        # No cap on kept-alive connections: an idle one costs the gate a descriptor, not a
        # worker (the per-source cap bounds them), and skipping cheroot's count saves CPU.
        self.server.keep_alive_conn_limit = None
        self.server.ssl_adapter = _context_adapter(context)
        self.server.error_log = self._error_log  # type: ignore[method-assign]
        self.server.put_conn = _lingering_put_conn(self.server)  # type: ignore[method-assign]
        self._thread: threading.Thread | None = None

    @staticmethod
    def _error_log(msg: str = "", level: int = 20, traceback: bool = False) -> None:
        # A client dropping its TLS connection is routine: one debug line, no traceback.
        log.log(logging.DEBUG if level < logging.ERROR else logging.WARNING,
                "http: %s", msg.strip().splitlines()[0] if msg.strip() else "connection error")

    @property
    def bound_port(self) -> int:
        return int(self.server.bind_addr[1])

    def start(self) -> None:
        self.server.prepare()
        self._thread = threading.Thread(target=self.server.serve, name="httpd", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
