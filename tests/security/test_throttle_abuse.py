"""Throttling cannot be turned against the user (issue 9 item 4)."""

from __future__ import annotations

import http.client
import json
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest

from nimbus.client import tls_context
from nimbus.config import ServerConfig
from nimbus.errors import Throttled, Unauthorized
from nimbus.security.pki import ca_fingerprint
from nimbus.server import iam
from nimbus.server.boot import open_state

JSON = {"Content-Type": "application/json"}
ATTACKER, USER = "127.0.0.2", "127.0.0.1"


def post(server, path, body, source=USER):
    """One POST from a chosen loopback source address."""
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=60,
                                       context=tls_context(server.ca_pem()),
                                       source_address=(source, 0))
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers=JSON)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Retry-After"), resp.read()
    finally:
        conn.close()


def login(server, username, password, source=USER):
    return post(server, "/v1/iam/login", {"username": username, "password": password}, source)


@pytest.fixture
def carol(server, ops):
    user = ops.request("POST", "/v1/iam/users", {"username": "carol"})
    ops.request("POST", f"/v1/iam/users/{user['id']}/password", {"password": "right password"})
    return user


def test_an_attacker_at_one_address_cannot_lock_the_user_out_at_another(server, carol):
    for _ in range(12):
        login(server, "carol", "guess password", ATTACKER)
    assert login(server, "CAROL", "right password", ATTACKER)[0] == 429  # attacker: blocked
    assert login(server, "carol", "right password", USER)[0] == 200  # the user: not


def test_parallel_attempts_from_one_source_check_at_most_the_limit(server, carol):
    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(lambda _: login(server, "carol", "guess password")[0],
                                 range(60)))
    assert statuses.count(401) <= 5, statuses  # before: 17 of 60 were checked
    assert statuses.count(401) + statuses.count(429) == 60


def test_the_bootstrap_throttle_is_per_source(server):
    fp = ca_fingerprint(server.ca_pem())

    def guess(source):
        body = {"ca_fingerprint": fp, "nonce": secrets.token_hex(16), "proof": "1" * 64}
        return post(server, "/v1/bootstrap", body, source)[0]

    assert [guess(ATTACKER) for _ in range(7)][-2:] == [429, 429]
    secret = (server.data_dir / "bootstrap.secret").read_text().strip()
    nonce = secrets.token_hex(16)
    body = {"ca_fingerprint": fp, "nonce": nonce,
            "proof": iam.bootstrap_proof(secret, fp, nonce)}
    status, _, reply = post(server, "/v1/bootstrap", body, USER)
    assert status == 201, reply


def test_a_wall_clock_step_does_not_stretch_retry_after(tmp_path):
    wall = [1_800_000_000.0]
    config = ServerConfig(data_dir=str(tmp_path / "data"), wireguard=False).validate()
    state = open_state(config, clock=lambda: wall[0])
    user = iam.create_user(state, "erin", False, actor="test")
    iam.set_password(state, user["id"], "the real password", actor="test")
    for _ in range(5):
        with pytest.raises(Unauthorized):
            iam.login(state, "erin", "a wrong password", "10.9.0.1")
    wall[0] -= 86_400  # NTP (or an operator) steps the clock back a day
    with pytest.raises(Throttled) as err:
        iam.login(state, "erin", "a wrong password", "10.9.0.1")
    assert err.value.retry_after <= 900  # before: 87,301 s
