"""Agent pieces without a server: backoff, renewal schedule, task handlers, key swap."""

from __future__ import annotations

import time

import pytest

from nimbus.agent import tasks
from nimbus.agent.daemon import Backoff, RenewalSchedule, renew_due_at
from nimbus.agent.files import AgentFiles, key_matches


def test_backoff_doubles_with_jitter_up_to_the_cap():
    low = Backoff(base=1, cap=30, rand=lambda: 0.0)
    assert [low.next() for _ in range(7)] == [0.5, 1, 2, 4, 8, 15, 15]
    high = Backoff(base=1, cap=30, rand=lambda: 1.0)
    assert [high.next() for _ in range(7)][-1] == 30
    assert high.reset() == 7 and high.next() == 1


def test_renewal_is_due_at_two_thirds_of_the_life_since_we_got_it():
    # A back-dated not_before must not make a fresh short-lived certificate look old.
    assert renew_due_at(not_before=700, not_after=1030, obtained_at=1000) == 1020
    assert renew_due_at(not_before=0, not_after=3000, obtained_at=0) == 2000


class SteppingClock:
    """A wall clock an operator (or NTP) can step, next to a monotonic one that only runs."""

    def __init__(self, wall: float) -> None:
        self.wall, self.mono = wall, 1000.0

    def run(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.mark.parametrize("step", [3600, -3600, 86400, -86400])
def test_renewal_follows_the_certificate_not_the_wall_clock(step):
    day = 86400
    clock = SteppingClock(wall=1_000_000.0)
    schedule = RenewalSchedule(monotonic=lambda: clock.mono)
    # A 30-day certificate obtained just now: due after 20 days of running time.
    schedule.load(not_before=clock.wall - 300, not_after=clock.wall + 30 * day,
                  wall_now=clock.wall)
    clock.run(10 * day)
    clock.wall += step  # the clock is stepped while the agent runs
    clock.run(10 * day - 60)
    assert not schedule.due()
    clock.run(120)
    assert schedule.due()  # on time, whichever way the clock was stepped


def test_renewal_after_a_restart_is_within_the_remaining_life():
    """Loaded late in the certificate's life (an agent restarted), it renews before expiry."""
    day = 86400
    clock = SteppingClock(wall=1_000_000.0)
    schedule = RenewalSchedule(monotonic=lambda: clock.mono)
    not_after = clock.wall + 3 * day  # 27 of 30 days already used
    schedule.load(not_before=not_after - 30 * day, not_after=not_after, wall_now=clock.wall)
    assert 0 < schedule.seconds_left() <= 2 * day
    schedule.load(not_before=not_after - 30 * day, not_after=not_after,
                  wall_now=not_after + 5)  # already expired: renew at once
    assert schedule.due()


def test_a_failed_renewal_is_retried_on_the_monotonic_clock():
    clock = SteppingClock(wall=5000.0)
    schedule = RenewalSchedule(monotonic=lambda: clock.mono)
    schedule.retry_in(60)
    clock.wall -= 86400  # a step back must not postpone the retry by a day
    clock.run(61)
    assert schedule.due()


def test_unknown_task_type_fails_with_a_clear_output():
    ctx = tasks.TaskContext("node-0123456789abcdef")
    assert tasks.run_task(ctx, {"id": "t", "type": "make_coffee", "payload": {}}) == (
        "failed", "this agent does not know the task type 'make_coffee'")


def test_update_peers_without_wireguard_succeeds_with_a_note_and_remembers_peers():
    seen = []
    ctx = tasks.TaskContext("node-0123456789abcdef", None, seen.append,
                            subnet="10.106.103.0/24")
    peer = {"node_id": "control-plane", "public_key": "A" * 43 + "=",
            "endpoint": "192.0.2.1:51820", "allowed_ips": ["10.106.103.1/32"]}
    status, output = tasks.run_task(ctx, {"id": "t", "type": "update_wireguard_peers",
                                             "payload": {"peers": [peer]}})
    assert status == "succeeded" and "--no-wireguard" in output
    assert seen == [[peer]]


def test_update_peers_with_a_bad_peer_fails_and_changes_nothing():
    class Iface:
        def apply_peers(self, peers):
            raise AssertionError("must not be called")

    ctx = tasks.TaskContext("node-0123456789abcdef", Iface(), subnet="10.106.103.0/24")
    status, output = tasks.run_task(ctx, {"id": "t", "type": "update_wireguard_peers",
                                             "payload": {"peers": [{"public_key": "nope"}]}})
    assert status == "failed" and "not base64" in output


def test_a_failing_apply_is_reported_failed():
    class Iface:
        def apply_peers(self, peers):
            from nimbus.sysrun import CommandError
            raise CommandError(["wg", "set"], 1, "Operation not permitted")

    ctx = tasks.TaskContext("node-0123456789abcdef", Iface(), subnet="10.106.103.0/24")
    status, output = tasks.run_task(ctx, {"id": "t", "type": "update_wireguard_peers",
                                             "payload": {"peers": []}})
    assert status == "failed" and "Operation not permitted" in output


def test_interrupted_key_swap_is_finished_or_discarded(tmp_path):
    from nimbus.security import pki

    ca, ca_key = pki.create_ca(time.time())
    files = AgentFiles(tmp_path)
    files.prepare()
    csr, key = pki.make_csr("node-0123456789abcdef")
    cert, _, _ = pki.sign_client_csr(ca, ca_key, csr, "node-0123456789abcdef", 60, time.time())
    files.replace_client_cert(cert, key)
    assert key_matches(files.key.read_text(), files.cert.read_text())

    # Crash after the certificate was replaced but before the key was: finish the swap.
    csr2, key2 = pki.make_csr("node-0123456789abcdef")
    cert2, _, _ = pki.sign_client_csr(ca, ca_key, csr2, "node-0123456789abcdef", 60,
                                      time.time())
    files.next_key.write_text(key2)
    files.cert.write_text(cert2)
    files.recover()
    assert files.key.read_text() == key2 and not files.next_key.exists()

    # Crash before the certificate was replaced: the staged key is dropped.
    files.next_key.write_text(pki.make_csr("node-0123456789abcdef")[1])
    files.recover()
    assert files.key.read_text() == key2 and not files.next_key.exists()
