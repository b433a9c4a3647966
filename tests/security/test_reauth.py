"""A stolen JWT cannot become permanent access (issue 9 item 5)."""

from __future__ import annotations

import subprocess

import pytest

from nimbus.client import ApiClient, BearerAuth
from nimbus.errors import BadRequest, Forbidden, Throttled
from tests.harness import nimbus_argv
from tests.security.helpers import anonymous, store_doc

PASSWORD = "bobs-password-1"


@pytest.fixture
def bob(server, ops):
    user = ops.request("POST", "/v1/iam/users", {"username": "bob"})
    ops.request("POST", f"/v1/iam/users/{user['id']}/password", {"password": PASSWORD})
    token = anonymous(server).request("POST", "/v1/iam/login",
                                      {"username": "bob", "password": PASSWORD})["token"]
    return user, ApiClient(server.url, server.ca_pem(), auth=BearerAuth(token))


def _keys(server, user_id):
    return [k for k in store_doc(server, "keys").values() if k["user_id"] == user_id]


def test_a_bearer_token_alone_cannot_create_a_key_or_change_the_password(server, bob):
    user, jwt = bob
    keys = f"/v1/iam/users/{user['id']}/keys"
    password = f"/v1/iam/users/{user['id']}/password"
    with pytest.raises(BadRequest, match="current_password is required"):
        jwt.request("POST", keys, {})
    with pytest.raises(Forbidden, match="current password is wrong"):
        jwt.request("POST", keys, {"current_password": "not-bobs-password"})
    with pytest.raises(BadRequest, match="current_password is required"):
        jwt.request("POST", password, {"password": "attackers-password"})
    with pytest.raises(Forbidden):
        jwt.request("POST", password, {"password": "attackers-password",
                                       "current_password": "a guess"})
    assert _keys(server, user["id"]) == []
    assert anonymous(server).request("POST", "/v1/iam/login",
                                     {"username": "bob", "password": PASSWORD})["token"]
    # Knowing the password, the holder may do both.
    key = jwt.request("POST", keys, {"current_password": PASSWORD})
    assert key["access_key"].startswith("NBUS")
    jwt.request("POST", password, {"password": "bobs-new-password", "current_password": PASSWORD})


def test_wrong_current_passwords_are_throttled_like_logins(server, bob):
    user, jwt = bob
    for _ in range(5):
        with pytest.raises(Forbidden):
            jwt.request("POST", f"/v1/iam/users/{user['id']}/keys", {"current_password": "x"})
    with pytest.raises(Throttled):
        jwt.request("POST", f"/v1/iam/users/{user['id']}/keys", {"current_password": PASSWORD})


def test_a_user_without_a_password_must_use_hmac(server, ops):
    admin_id = ops.request("GET", "/v1/iam/users")[0]["id"]
    token = ops.request("POST", "/v1/iam/token", {})["token"]
    jwt = ApiClient(server.url, server.ca_pem(), auth=BearerAuth(token))
    for path, body in ((f"/v1/iam/users/{admin_id}/keys", {"current_password": "anything"}),
                       (f"/v1/iam/users/{admin_id}/password", {"password": "new-password-1"})):
        with pytest.raises(Forbidden, match="HMAC"):
            jwt.request("POST", path, body)
    assert len(_keys(server, admin_id)) == 1
    # HMAC-signed requests are unchanged: no current password needed.
    assert ops.request("POST", f"/v1/iam/users/{admin_id}/keys", {})["access_key"]


def test_cli_asks_for_the_current_password_only_with_a_token(server, cli, admin, tmp_path):
    user = cli.json("iam", "create-user", "--username", "carl")
    cli.run("iam", "set-password", "--user-id", user["id"], "--password-file", "-",
            input=PASSWORD + "\n")
    token = cli.json("iam", "login", "--username", "carl", env={"NIMBUS_PASSWORD": PASSWORD}
                     )["token"]
    env = {**cli.env, "NIMBUS_TOKEN": token}
    r = subprocess.run([*nimbus_argv(), "iam", "create-key", "--user-id", user["id"]], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                       start_new_session=True, check=False)
    assert r.returncode != 0 and "current password needed" in r.stderr
    assert "Traceback" not in r.stderr
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    key = cli.json("iam", "create-key", "--user-id", user["id"], "--current-password-file",
                   str(pw), env={"NIMBUS_TOKEN": token})
    assert key["user_id"] == user["id"]
    # HMAC (the configured key): no current password asked for.
    assert cli.json("iam", "create-key", "--user-id", user["id"])["user_id"] == user["id"]


@pytest.fixture
def root(server, ops):
    """A second admin with a password, and a JWT from logging in."""
    user = ops.request("POST", "/v1/iam/users", {"username": "root2", "admin": True})
    ops.request("POST", f"/v1/iam/users/{user['id']}/password", {"password": PASSWORD})
    token = anonymous(server).request("POST", "/v1/iam/login",
                                      {"username": "root2", "password": PASSWORD})["token"]
    return user, ApiClient(server.url, server.ca_pem(), auth=BearerAuth(token))


def test_a_bearer_token_alone_cannot_create_join_material(server, ops, root):
    """Issue 23 item 6: a stolen token must not become a self-renewing node certificate."""
    _, jwt = root
    pending = ops.request("POST", "/v1/nodes", {"ip_address": "192.0.2.50"})["node"]
    before = store_doc(server, "nodes")
    token_path = f"/v1/nodes/{pending['id']}/token"
    with pytest.raises(BadRequest, match="current_password is required"):
        jwt.request("POST", "/v1/nodes", {"ip_address": "192.0.2.51"})
    with pytest.raises(BadRequest, match="current_password is required"):
        jwt.request("POST", token_path, {})
    with pytest.raises(Forbidden, match="current password is wrong"):
        jwt.request("POST", "/v1/nodes", {"ip_address": "192.0.2.51",
                                          "current_password": "a guess"})
    with pytest.raises(Forbidden, match="current password is wrong"):
        jwt.request("POST", token_path, {"current_password": "a guess"})
    assert store_doc(server, "nodes") == before  # no node, the old join secret unchanged
    made = jwt.request("POST", "/v1/nodes", {"ip_address": "192.0.2.51",
                                             "current_password": PASSWORD})
    assert made["join_token"].startswith("nimbus-join-v1.")
    again = jwt.request("POST", token_path, {"current_password": PASSWORD})
    assert again["node"]["id"] == pending["id"]


def test_a_key_minted_token_cannot_create_join_material_without_a_password(server, ops):
    """The bootstrap admin has keys only: with its JWT, join material needs HMAC."""
    token = ops.request("POST", "/v1/iam/token", {})["token"]
    jwt = ApiClient(server.url, server.ca_pem(), auth=BearerAuth(token))
    pending = ops.request("POST", "/v1/nodes", {"ip_address": "192.0.2.60"})["node"]
    before = store_doc(server, "nodes")
    with pytest.raises(Forbidden, match="HMAC"):
        jwt.request("POST", "/v1/nodes", {"ip_address": "192.0.2.61",
                                          "current_password": "anything"})
    with pytest.raises(Forbidden, match="HMAC"):
        jwt.request("POST", f"/v1/nodes/{pending['id']}/token", {})
    assert store_doc(server, "nodes") == before
    # HMAC-signed requests are unchanged: no current password needed.
    assert ops.request("POST", f"/v1/nodes/{pending['id']}/token", {})["join_token"]
    assert ops.request("POST", "/v1/nodes", {"ip_address": "192.0.2.62"})["join_token"]


def test_wrong_passwords_for_join_material_are_throttled(server, root):
    _, jwt = root
    for _ in range(5):
        with pytest.raises(Forbidden):
            jwt.request("POST", "/v1/nodes", {"ip_address": "192.0.2.70",
                                              "current_password": "x"})
    with pytest.raises(Throttled):
        jwt.request("POST", "/v1/nodes", {"ip_address": "192.0.2.70",
                                          "current_password": PASSWORD})


def test_cli_node_add_and_token_ask_for_the_current_password_with_a_token(server, cli, admin,
                                                                          tmp_path):
    user = cli.json("iam", "create-user", "--username", "dora", "--admin")
    cli.run("iam", "set-password", "--user-id", user["id"], "--password-file", "-",
            input=PASSWORD + "\n")
    token = cli.json("iam", "login", "--username", "dora", env={"NIMBUS_PASSWORD": PASSWORD}
                     )["token"]
    env = {**cli.env, "NIMBUS_TOKEN": token}
    for args in (["node", "add", "--ip", "192.0.2.80"], ["node", "token", "192.0.2.80"]):
        r = subprocess.run([*nimbus_argv(), *args], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60, start_new_session=True,
                           check=False)
        assert r.returncode != 0 and "current password needed" in r.stderr, args
        assert "Traceback" not in r.stderr
    assert store_doc(server, "nodes") == {}
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    made = cli.json("node", "add", "--ip", "192.0.2.80", "--current-password-file", str(pw),
                    env={"NIMBUS_TOKEN": token})
    again = cli.json("node", "token", made["node"]["id"], "--current-password-file", str(pw),
                     env={"NIMBUS_TOKEN": token})
    assert again["node"]["id"] == made["node"]["id"]
    # HMAC (the configured key): no current password asked for.
    assert cli.json("node", "token", made["node"]["id"])["join_token"]
