"""Lifecycle of `nimbus serve`: open state, start background work and the HTTPS server, stop."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from nimbus.config import ServerConfig, parse_listen
from nimbus.server import instances
from nimbus.server.boot import open_state
from nimbus.server.state import State
from nimbus.store.files import write_private

log = logging.getLogger("nimbus.serve")


def _services(state: State) -> list[Callable[[], None]]:
    """Start the background work of the server; returns the functions that stop it."""
    stops = [state.runtime.start_flusher(5.0)]
    if state.config.wireguard:
        try:
            _start_tunnel(state)
        except BaseException:
            stops[0]()  # the caller only stops what this function returned
            raise
        stops.append(_stop_tunnel(state))
        from nimbus.server import joinkeys, mesh

        # Expired join tokens and finished key handovers leave the interface (joinkeys).
        stops.append(joinkeys.start_sweep(state, lambda: mesh.reconcile(state)))
    return stops


def _start_tunnel(state: State) -> None:
    """Bring up the control plane's WireGuard interface and give it the current peers."""
    from nimbus.server import mesh
    from nimbus.server.tunnel import ControlPlaneTunnel
    from nimbus.sysrun import Runner

    tunnel = ControlPlaneTunnel(state.config, Runner(), lambda: mesh.peers_for(state, None))
    tunnel.up(state.keys.wireguard_keypair()[0])
    state.tunnel = tunnel
    tunnel.reconcile()


def _stop_tunnel(state: State) -> Callable[[], None]:
    def stop() -> None:
        # The interface stays up across restarts so that the mesh keeps working.
        state.tunnel = None
    return stop


def build(config: ServerConfig) -> tuple[State, Any]:
    from nimbus.server import iam
    from nimbus.server.app import create_app

    state = open_state(config)
    iam.ensure_bootstrap_secret(state)
    return state, create_app(state)


def serve(config: ServerConfig, ready: threading.Event | None = None,
          stop_event: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or stop_event), then stop gracefully."""
    from nimbus.server.ca import required_sans
    from nimbus.server.http.gate import Limits
    from nimbus.server.http.httpd import ApiServer, server_tls_context

    # Handlers first: a signal that arrives once the API answers (or while it starts) must
    # stop it cleanly; before, SIGINT could leave the process hanging on non-daemon threads.
    stop = stop_event or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    from nimbus.server import verify

    verify.check_before_start(config.data_path)  # one line naming the file, before anything
    state, app = build(config)
    stops: list[Callable[[], None]] = []
    server = record = None
    try:  # whatever fails from here on, everything started so far is stopped again
        cert, key = state.keys.server_cert(config)
        context = server_tls_context(cert, key, state.keys.ca_cert_path)
        host, port = parse_listen(config.listen)
        stops = _services(state)
        server = ApiServer(app, host, port, context, config.threads, config.max_threads,
                           Limits.from_config(config))
        server.start()
        write_private(config.data_path / "endpoint.json",
                      json.dumps({"api_url": config.direct_api_url, "port": server.bound_port}))
        record = instances.register(config.data_path, config.direct_api_url)
        log.info("nimbus API listening on https://%s:%d (SANs: %s)", host, server.bound_port,
                 ", ".join(required_sans(config)))
        if ready is not None:
            ready.set()
        stop.wait()
        log.info("stopping")
    finally:
        state.waiters.close()  # long-polls would hold worker threads for up to 25 s
        if server is not None:
            server.stop()
        state.audit.flush()  # the aggregated refusal counts of the interval in progress
        for fn in reversed(stops):
            fn()
        if record is not None:
            instances.unregister(record)
    log.info("stopped")
