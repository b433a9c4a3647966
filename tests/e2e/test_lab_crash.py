"""End-to-end: `nimbus lab down` cleans up a lab whose `lab up` was killed half-way."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.e2e.test_lab import (
    DATA_ROOT,
    env,
    leftovers,
    missing_requirements,
    new_id,
    nimbus,
    nimbus_cmd,
    stop_lab,
    wait_clean,
)

pytestmark = pytest.mark.root


def test_lab_down_after_lab_up_was_killed(request: pytest.FixtureRequest):
    reason = missing_requirements()
    if reason:
        pytest.skip(f"needs root, /dev/net/tun, wireguard-go, wg, ip, ping, tcpdump: {reason}")
    lab_id = new_id()
    request.addfinalizer(lambda: stop_lab(lab_id) if leftovers(lab_id) else None)
    up = subprocess.Popen([*nimbus_cmd(), "lab", "up", "--nodes", "2", "--id", lab_id],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    try:
        # Kill it once the first agent has started: daemons, namespaces and a WireGuard
        # interface exist, and the join may still be under way.
        deadline = time.monotonic() + 120
        while not (DATA_ROOT / lab_id / "logs" / "n1.log").exists():
            assert up.poll() is None, "lab up ended before it could be killed"
            assert time.monotonic() < deadline, "lab up never started an agent"
            time.sleep(0.05)
    finally:
        up.send_signal(signal.SIGKILL)
        up.wait()
    assert leftovers(lab_id) != []
    nimbus("lab", "down", "--id", lab_id)
    assert wait_clean(lab_id) == []
