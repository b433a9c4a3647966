"""Login brute force: per-user and per-source throttling, and no user enumeration by timing."""

from __future__ import annotations

import statistics
import time

import pytest

from nimbus.config import ServerConfig
from nimbus.errors import Throttled, Unauthorized
from nimbus.server import iam
from nimbus.server.boot import open_state
from nimbus.server.ratelimit import LoginThrottle
from tests.security.helpers import raw

JSON = {"Content-Type": "application/json"}


def attempt(server, username, password):
    body = f'{{"username": "{username}", "password": "{password}"}}'.encode()
    return raw(server, "POST", "/v1/iam/login", body, JSON)


def test_sixth_wrong_password_is_throttled_then_any_source_limit(server, ops):
    user = ops.request("POST", "/v1/iam/users", {"username": "carol"})
    ops.request("POST", f"/v1/iam/users/{user['id']}/password", {"password": "right password"})
    for _ in range(5):
        assert attempt(server, "carol", "wrong password")[0] == 401
    status, headers, _ = attempt(server, "carol", "wrong password")
    assert status == 429
    assert 1 <= int(headers["retry-after"]) <= 900
    # Even the right password waits: the attacker learns nothing from the 6th try on.
    assert attempt(server, "CAROL", "right password")[0] == 429
    # Per source: 20 failures from one address in 5 minutes, whatever the user names.
    for i in range(15):
        assert attempt(server, f"nobody{i}", "wrong password")[0] == 401
    status, headers, _ = attempt(server, "someone-else", "wrong password")
    assert status == 429 and int(headers["retry-after"]) >= 1


def test_throttle_windows_with_a_controlled_clock():
    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(5):
        throttle.attempt("dave", "10.0.0.1")
    with pytest.raises(Throttled) as err:
        throttle.attempt("Dave", "10.0.0.1")  # compared the way login compares names
    assert err.value.retry_after == 900
    throttle.attempt("dave", "10.0.0.2")  # another source is not locked out
    now[0] += 899
    with pytest.raises(Throttled):
        throttle.attempt("dave", "10.0.0.1")
    now[0] += 2
    throttle.attempt("dave", "10.0.0.1")  # 15 minutes later it is over


def test_an_ipv6_client_counts_as_its_slash_64():
    throttle = LoginThrottle(clock=lambda: 5.0)
    for i in range(20):
        throttle.attempt(f"user{i}", f"2001:db8:1:2::{i + 1:x}")
    with pytest.raises(Throttled):
        throttle.attempt("another", "2001:db8:1:2:ffff::1")
    throttle.attempt("another", "2001:db8:1:3::1")


@pytest.fixture
def state(tmp_path):
    config = ServerConfig(data_dir=str(tmp_path / "data"), wireguard=False).validate()
    st = open_state(config)
    user = iam.create_user(st, "erin", False, actor="test")
    iam.set_password(st, user["id"], "the real password", actor="test")
    return st


def _cost(state, username: str, i: int) -> float:
    state.throttle = LoginThrottle()
    started = time.perf_counter()
    with pytest.raises(Unauthorized):
        iam.login(state, username, "a wrong password", f"10.9.0.{i}")
    return time.perf_counter() - started


def test_unknown_user_costs_about_as_much_as_a_known_one(state):
    known, unknown = [], []
    for i in range(7):
        known.append(_cost(state, "erin", i))
        unknown.append(_cost(state, f"ghost{i}", i))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 1 / 3 < ratio < 3, (known, unknown)
