"""Load generator processes: persistent http.client TLS connections, open-loop pacing."""

from __future__ import annotations

import http.client
import multiprocessing as mp
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Slot:
    """One kept-alive connection and how to build its next request."""

    make_request: Callable[[], tuple[str, str, bytes | None, dict[str, str]]]
    context: ssl.SSLContext
    conn: http.client.HTTPSConnection | None = None


@dataclass
class StepResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    sent: int = 0

    def merge(self, other: StepResult) -> None:
        self.latencies.extend(other.latencies)
        self.errors += other.errors
        self.sent += other.sent
        self.error_samples.extend(other.error_samples[: max(0, 5 - len(self.error_samples))])


def _send(slot: Slot, host: str, port: int, res: StepResult, lock: threading.Lock) -> None:
    method, path, body, headers = slot.make_request()
    started = time.perf_counter()
    try:
        if slot.conn is None:
            slot.conn = http.client.HTTPSConnection(host, port, context=slot.context, timeout=30)
        slot.conn.request(method, path, body=body, headers=headers)
        resp = slot.conn.getresponse()
        resp.read()
        elapsed = time.perf_counter() - started
        ok = 200 <= resp.status < 300
        detail = f"HTTP {resp.status}"
    except (OSError, http.client.HTTPException) as exc:
        elapsed, ok, detail = time.perf_counter() - started, False, repr(exc)
        if slot.conn is not None:
            slot.conn.close()
        slot.conn = None
    with lock:
        res.sent += 1
        if ok:
            res.latencies.append(elapsed)
        else:
            res.errors += 1
            if len(res.error_samples) < 5:
                res.error_samples.append(detail)


def _paced(slot: Slot, host: str, port: int, rate: float, start: float, end: float,
           res: StepResult, lock: threading.Lock) -> None:
    """Send at `rate` per second from `start` to `end` (open loop; no catch-up bursts)."""
    interval = 1.0 / rate
    due = start + random.random() * interval
    while due < end:
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        _send(slot, host, port, res, lock)
        due += interval
        now = time.time()
        if now - due > interval:  # fell behind: skip ahead, the shortfall shows in the rate
            due = now


def _closed(slot: Slot, host: str, port: int, start: float, end: float, res: StepResult,
            lock: threading.Lock) -> None:
    """Send back to back from `start` to `end` (closed loop)."""
    time.sleep(max(0.0, start - time.time()))
    while time.time() < end:
        _send(slot, host, port, res, lock)


def _worker(pipe: Any, host: str, port: int, factory: Callable[[], list[Slot]]) -> None:
    slots = factory()
    while True:
        cmd = pipe.recv()
        if cmd[0] == "stop":
            break
        _, mode, rate, start, end = cmd
        res, lock = StepResult(), threading.Lock()
        if mode == "paced":
            threads = [threading.Thread(target=_paced, args=(s, host, port, rate, start, end,
                                                             res, lock)) for s in slots]
        else:
            threads = [threading.Thread(target=_closed, args=(s, host, port, start, end,
                                                              res, lock)) for s in slots]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pipe.send(res)
    for s in slots:
        if s.conn is not None:
            s.conn.close()


class LoadGen:
    """N processes, each running some connections in threads."""

    def __init__(self, host: str, port: int, factories: list[Callable[[], list[Slot]]]) -> None:
        ctx = mp.get_context("fork")
        self.pipes = []
        self.procs = []
        for factory in factories:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, host, port, factory), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        self.connections = 0

    def run(self, mode: str, per_slot_rate: float, duration: float) -> tuple[StepResult, float]:
        start = time.time() + 0.3
        end = start + duration
        for pipe in self.pipes:
            pipe.send(("run", mode, per_slot_rate, start, end))
        total = StepResult()
        for pipe in self.pipes:
            total.merge(pipe.recv())
        return total, max(time.time(), end) - start

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(("stop",))
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
