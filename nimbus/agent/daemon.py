"""The agent's run loop: heartbeats, certificate renewal and task long-polling over mTLS."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from nimbus import __version__, wire
from nimbus.agent.files import AgentFiles
from nimbus.agent.tasks import TaskContext, run_task
from nimbus.client import ApiClient
from nimbus.config import AgentConfig
from nimbus.errors import NimbusError, NotFound, Throttled, Unauthorized
from nimbus.logs import mask

log = logging.getLogger("nimbus.agent")
BACKOFF_CAP_SEC = 30.0
RENEW_AT = 2 / 3  # of the certificate's life
RENEW_RETRY_SEC = 10
TOOLS_PROBE_SEC = 60.0  # an operator who installs ganesha or weed is noticed within a minute


class Backoff:
    """Exponential backoff with jitter: 1, 2, 4 … capped, each scaled by 0.5-1.0."""

    def __init__(self, base: float = 1.0, cap: float = BACKOFF_CAP_SEC,
                 rand: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self.rand = base, cap, rand
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        delay = min(self.cap, self.base * 2 ** min(self.failures - 1, 16))
        return delay * (0.5 + self.rand() / 2)

    def reset(self) -> int:
        failures, self.failures = self.failures, 0
        return failures


def renew_due_at(not_before: float, not_after: float, obtained_at: float) -> float:
    """When 2/3 of the certificate's life are over, counted from when we got it.

    The server back-dates not_before for clock skew; for short lifetimes that would make
    a fresh certificate look two-thirds used, so the later of the two is the start.
    """
    start = min(max(not_before, obtained_at), not_after)
    return start + (not_after - start) * RENEW_AT


class RenewalSchedule:
    """When to renew the certificate, from its own validity, measured on the monotonic clock.

    At load the wall clock is read once to place the certificate's remaining life (its
    notAfter is wall-clock time); from then on only the monotonic clock counts, so a clock
    step (NTP, a dead RTC battery) can neither postpone a renewal until the certificate has
    expired nor make the agent renew in a loop. The file's mtime plays no part.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._due = monotonic()

    def load(self, not_before: float, not_after: float, wall_now: float) -> None:
        wait = renew_due_at(not_before, not_after, wall_now) - wall_now
        self._due = self.monotonic() + max(0.0, wait)

    def retry_in(self, seconds: float) -> None:
        self._due = self.monotonic() + seconds

    def due(self) -> bool:
        return self.monotonic() >= self._due

    def seconds_left(self) -> float:
        return self._due - self.monotonic()


class Agent:
    """Two threads (heartbeat+renewal, tasks), each with its own kept-alive mTLS client."""

    def __init__(self, config: AgentConfig, files: AgentFiles, wireguard: Any,
                 stop: threading.Event, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        from nimbus.agent.metrics import CpuSampler

        self.config = config
        self.files = files
        self.wireguard = wireguard
        self.stop = stop
        self.clock = clock
        self.cpu = CpuSampler()
        self._cred_lock = threading.Lock()
        self._handling = threading.Event()
        self._generation = 0
        self.renewal = RenewalSchedule(monotonic)
        self._state = files.load_state()
        from nimbus.agent.logring import LogRing

        self.log_ring = LogRing()  # attached while run() runs: `nimbus node logs` reads it
        self._load_cert_schedule()
        from nimbus.agent.membership import Membership

        self.membership = Membership(config, self._state, files, clock)
        from nimbus.agent.supervisor import Supervisor

        # Subsystem processes (ganesha, weed): what runs is kept in the data dir, so an
        # agent restart brings it back (restore() in run()).
        self.supervisor = Supervisor(files.root / "logs",
                                     state_file=files.root / "supervisor.json")
        self._tools_found: dict[str, str] = {}
        self._tools_at: float | None = None

    # -- credentials --------------------------------------------------------------------

    def _load_cert_schedule(self) -> None:
        from nimbus.security.pki import cert_info

        info = cert_info(self.files.read(self.files.cert))
        self.renewal.load(info.not_before, info.not_after, self.clock())
        self._serial = info.serial
        self._not_after = info.not_after

    def _client(self, timeout: float) -> tuple[ApiClient, int]:
        with self._cred_lock:
            ca = self.files.read(self.files.ca)
            client = ApiClient(self.config.api_url, ca_pem=ca, cert_file=str(self.files.cert),
                               key_file=str(self.files.key), timeout=timeout)
            return client, self._generation

    def _current(self, client: ApiClient, gen: int, timeout: float) -> tuple[ApiClient, int]:
        """The same client, or a new one when the certificate was renewed meanwhile."""
        if gen == self._generation:
            return client, gen
        client.close()
        return self._client(timeout)

    def _renew(self, client: ApiClient) -> None:
        """New key + CSR, POST /v1/internal/renew, then swap the files atomically."""
        from nimbus.agent.files import key_matches
        from nimbus.security.pki import cert_info, make_csr

        csr_pem, key_pem = make_csr(self.config.node_id)
        resp = client.request("POST", "/v1/internal/renew",
                              wire.build(wire.RENEW_REQUEST, csr=csr_pem))
        cert_pem = resp["cert_pem"]
        if cert_info(cert_pem).common_name != self.config.node_id or not key_matches(
                key_pem, cert_pem):
            raise NimbusError("renewal returned a certificate for another key or node")
        with self._cred_lock:
            self.files.replace_client_cert(cert_pem, key_pem)
            self._generation += 1
        old = self._serial
        self._load_cert_schedule()
        log.info("certificate renewed: serial %s replaces %s, next renewal in %.0fs",
                 mask(self._serial, 8), mask(old, 8), self.renewal.seconds_left())

    def _try_renew(self, client: ApiClient, gen: int, timeout: float) -> tuple[ApiClient, int]:
        """Renew, or retry later; a failed renewal never blocks heartbeats."""
        try:
            self._renew(client)
        except NimbusError as exc:
            self.renewal.retry_in(RENEW_RETRY_SEC)
            log.warning("certificate renewal failed: %s; retrying in %ds", exc, RENEW_RETRY_SEC)
        return self._current(client, gen, timeout)

    # -- heartbeat ----------------------------------------------------------------------

    def heartbeat_loop(self) -> None:
        from nimbus.agent.enroll import ip_target
        from nimbus.agent.metrics import collect
        from nimbus.docker.engine import DockerEngine

        engine = DockerEngine(self.config.docker_host)
        interval = float(self.config.heartbeat_interval_sec)
        client, gen = self._client(timeout=max(15.0, interval))
        backoff = Backoff()
        target = ip_target(self.config, self._state)
        while not self.stop.is_set():
            client, gen = self._current(client, gen, max(15.0, interval))
            if self.renewal.due():
                client, gen = self._try_renew(client, gen, max(15.0, interval))
            try:
                body = collect(self.cpu, target, __version__)
                docker = engine.report()
                if docker is not None:
                    body["docker"] = docker
                tools = self._tools()
                if tools:
                    body["tools"] = tools
                # Stopped-for-good ones stay in the supervisor's table; report the live ones.
                live = {n: p["state"] for n, p in self.supervisor.status().items()
                        if p["state"] != "stopped"}
                if live:
                    body["processes"] = dict(sorted(live.items())[:wire.MAX_PROCESSES])
                resp = client.request("POST", "/v1/internal/heartbeat", body) or {}
                interval = float(resp.get("next_heartbeat_sec") or interval)
                self.membership.accepted()
                failures = backoff.reset()
                if failures:
                    log.info("control plane reachable again after %d failed attempts",
                             failures)
                delay = interval
            except Unauthorized as exc:
                delay = self.membership.refused(exc)  # deleted: said once, then quiet
            except Throttled as exc:
                delay = float(exc.retry_after)
                log.warning("heartbeat throttled; retrying in %.0fs", delay)
            except NimbusError as exc:
                if self.membership.tunnel_silent():  # WireGuard: were we deleted?
                    delay = self.membership.refused(exc)
                    log.debug("heartbeat failed: %s", exc)
                    self._stop_processes()
                    self.stop.wait(delay)
                    continue
                delay = backoff.next()
                log.warning("heartbeat failed: %s; retrying in %.1fs", exc, delay)
                if self.clock() > self._not_after:
                    log.error("this node's certificate expired (the agent was stopped for "
                              "longer than its lifetime); join the node again with a new token")
            if self.membership.removed.is_set():
                self._stop_processes()
            self.stop.wait(delay)
        client.close()

    def _stop_processes(self) -> None:
        """This node was deleted: nothing it served may keep running (weed, ganesha)."""
        for name in self.supervisor.status():
            log.info("stopping %s: this node was removed", name)
            self.supervisor.stop(name)

    def _tools(self) -> dict[str, str]:
        """What the subsystems can run here, probed at start and every TOOLS_PROBE_SEC."""
        from nimbus.agent.tasks import probe_tools

        now = time.monotonic()
        if self._tools_at is None or now - self._tools_at >= TOOLS_PROBE_SEC:
            self._tools_found, self._tools_at = probe_tools(self.config), now
        return self._tools_found

    # -- tasks --------------------------------------------------------------------------

    def _remember_peers(self, peers: list[dict[str, Any]]) -> None:
        self._state["peers"] = peers
        self.files.save_state(self._state)

    def task_loop(self) -> None:
        wait = max(0, int(self.config.long_poll_sec))
        timeout = wait + 15.0  # the server holds the request up to `wait` seconds
        client, gen = self._client(timeout)
        backoff = Backoff()
        ctx = TaskContext(self.config.node_id, self.wireguard, self._remember_peers,
                          docker_host=self.config.docker_host,
                          data_dir=self.config.data_path,
                          overlay_ip=self.config.wg_ip if self.wireguard is not None else "",
                          supervisor=self.supervisor, config=self.config,
                          log_ring=self.log_ring, subnet=self.config.subnet)
        unreported: list[tuple[str, str, str]] = []
        path = f"/v1/internal/tasks/{self.config.node_id}?wait={wait}"
        while not self.stop.is_set():
            if self.membership.removed.is_set():
                self.stop.wait(5.0)  # deleted: the heartbeat loop rechecks; poll nothing
                continue
            client, gen = self._current(client, gen, timeout)
            started = time.monotonic()
            try:
                self._report(client, unreported)
                tasks = client.request("GET", path, timeout=timeout) or []
                for task in tasks:
                    if self.stop.is_set():
                        break  # undelivered results: the server redelivers after a while
                    self._handling.set()
                    try:
                        status, output = run_task(ctx, task)
                    finally:
                        self._handling.clear()
                    unreported.append((task["id"], status, output))
                self._report(client, unreported)
                backoff.reset()
                if not tasks and time.monotonic() - started < 1.0:
                    self.stop.wait(1.0)  # the server did not long-poll: do not spin
            except Unauthorized as exc:
                log.debug("task polling refused: %s", exc)
                self.membership.refused(exc)
            except Throttled as exc:
                self.stop.wait(float(exc.retry_after))
            except NimbusError as exc:
                delay = backoff.next()
                log.warning("task polling failed: %s; retrying in %.1fs", exc, delay)
                self.stop.wait(delay)
        client.close()

    def _report(self, client: ApiClient, unreported: list[tuple[str, str, str]]) -> None:
        while unreported:
            task_id, status, output = unreported[0]
            try:
                client.request("POST", f"/v1/internal/tasks/{task_id}/result",
                               wire.build(wire.TASK_RESULT, status=status, output=output))
            except NotFound:
                log.info("task %s is gone; its result is dropped", task_id)
            unreported.pop(0)

    # -- lifecycle ----------------------------------------------------------------------

    def run(self) -> None:
        """Run until `stop` is set (SIGTERM/SIGINT); threads are daemons, so exit is prompt."""
        self.log_ring.attach()
        try:
            self._run()
        finally:
            self.log_ring.detach()

    def _run(self) -> None:
        log.info("agent %s running for %s against %s (heartbeat every %ss, WireGuard %s)",
                 __version__, self.config.node_id, self.config.api_url,
                 self.config.heartbeat_interval_sec, "on" if self.wireguard else "off")
        self.supervisor.restore()
        try:
            self._run_loops()
        finally:
            self.supervisor.stop_all()  # the wish list stays on disk for the next start

    def _run_loops(self) -> None:
        threads = [threading.Thread(target=self._guard(fn), name=name, daemon=True)
                   for name, fn in (("heartbeat", self.heartbeat_loop),
                                    ("tasks", self.task_loop))]
        for t in threads:
            t.start()
        while not self.stop.wait(1.0):
            pass
        log.info("stopping agent")
        threads[0].join(timeout=3)
        # A task handler that is running gets to finish; a pending long-poll is just dropped.
        deadline = time.monotonic() + 10
        while self._handling.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        """A loop that dies unexpectedly is restarted after a pause instead of going silent."""
        def run() -> None:
            while not self.stop.is_set():
                try:
                    fn()
                except Exception:
                    log.exception("agent loop %s crashed; restarting it in 5s", fn.__name__)
                    self.stop.wait(5)
        return run
