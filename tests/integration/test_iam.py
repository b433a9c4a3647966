"""IAM happy paths through the real CLI: users, keys, passwords, login, tokens, -o json."""

from __future__ import annotations

import json
import os
import subprocess

import jwt

from tests.harness import Cli, nimbus_argv
from tests.integration.test_auth import Raw


def _configure_as(cli_home, server, key: dict) -> Cli:
    """A second operator with its own HOME, configured with manual flags."""
    other = Cli(cli_home)
    ca = cli_home / "ca.crt"
    ca.write_text(server.ca_pem())
    other.run("configure", "--api-url", server.url, "--access-key", key["access_key"],
              "--secret-key", key["secret_key"], "--tls-ca", str(ca))
    path = cli_home / ".nimbus" / "config.json"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert json.loads(path.read_text())["tls_ca"] == server.ca_pem()
    return other


def test_json_output_is_exactly_the_response_data(server, cli, admin):
    raw = Raw(server)
    api = raw.hmac(admin, "GET", "/v1/iam/users")[2]["data"]
    out = cli.run("iam", "list-users", "-o", "json").stdout
    assert json.loads(out) == api
    assert cli.json("node", "list") == raw.hmac(admin, "GET", "/v1/nodes")[2]["data"] == []
    table = cli.run("iam", "list-users").stdout.splitlines()
    assert table[0].split()[:2] == ["ID", "USERNAME"] and "admin" in table[1]


def test_user_key_lifecycle(server, cli, admin, tmp_path):
    user = cli.json("iam", "create-user", "--username", "alice")
    assert set(user) == {"id", "username", "admin", "created_at", "has_password"}
    assert user["username"] == "alice" and user["admin"] is False
    key = cli.json("iam", "create-key", "--user-id", user["id"])
    assert key["access_key"].startswith("NBUS") and len(key["secret_key"]) >= 32
    assert key["user_id"] == user["id"]
    keys = cli.json("iam", "list-keys", "--user-id", user["id"])
    assert [k["access_key"] for k in keys] == [key["access_key"]]
    assert all("secret" not in json.dumps(k) for k in keys)

    alice = _configure_as(tmp_path / "alice", server, key)
    assert alice.json("node", "list") == []
    me = alice.json("iam", "list-keys", "--user-id", user["id"])
    assert [k["access_key"] for k in me] == [key["access_key"]]
    r = alice.run("iam", "create-user", "--username", "eve", check=False)
    assert r.returncode == 3 and "admin" in r.stderr and "Traceback" not in r.stderr

    deleted = cli.json("iam", "delete-key", "--user-id", user["id"], "--key-id",
                       key["access_key"])
    assert deleted == {"access_key": key["access_key"], "deleted": True}
    r = alice.run("node", "list", check=False)
    assert r.returncode == 3 and "Traceback" not in r.stderr
    assert cli.json("iam", "list-keys", "--user-id", user["id"]) == []

    assert cli.json("iam", "delete-user", user["id"]) == {"id": user["id"], "deleted": True}
    assert [u["username"] for u in cli.json("iam", "list-users")] == ["admin"]


def test_admin_flag(cli, admin):
    boss = cli.json("iam", "create-user", "--username", "boss", "--admin")
    assert boss["admin"] is True
    table = cli.run("iam", "create-user", "--username", "worker").stdout
    assert "worker" in table and "username" in table


def test_set_password_login_and_token(server, cli, admin):
    user = cli.json("iam", "create-user", "--username", "bob")
    out = cli.json("iam", "set-password", "--user-id", user["id"],
                   "--password", "bobs-password-1")
    assert out == {"id": user["id"], "password_changed": True}
    assert cli.json("iam", "list-users")[1]["has_password"] is True

    r = cli.run("iam", "login", "--username", "bob", "--password", "bobs-password-1")
    token, export = r.stdout.strip().splitlines()
    assert export == f"export NIMBUS_TOKEN={token}"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["username"] == "bob" and claims["adm"] is False
    assert claims["exp"] - claims["iat"] == 3600

    data = cli.json("iam", "login", "--username", "bob", "--password", "bobs-password-1")
    assert set(data) == {"token", "expires_at"}

    # NIMBUS_TOKEN and --token authenticate instead of the configured HMAC key.
    mine = cli.json("iam", "list-keys", "--user-id", user["id"], env={"NIMBUS_TOKEN": token})
    assert mine == []
    r = cli.run("iam", "list-users", check=False, env={"NIMBUS_TOKEN": token})
    assert r.returncode == 3, "bob's token must not act as the admin's key"
    r = cli.run("--token", token, "iam", "list-users", check=False)
    assert r.returncode == 3
    assert cli.json("--token", token, "node", "list") == []


def test_password_from_stdin_with_password_file_dash(server, cli, admin):
    user = cli.json("iam", "create-user", "--username", "carol")
    # No terminal (new session): the secret comes from stdin via --password-file -.
    r = subprocess.run([*nimbus_argv(), "iam", "set-password", "--user-id", user["id"],
                        "--password-file", "-"],
                       input="carols-password\n", capture_output=True,
                       text=True, env=cli.env, timeout=60, start_new_session=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "carols-password" not in r.stdout
    r = subprocess.run([*nimbus_argv(), "iam", "login", "--username", "carol",
                        "--password-file", "-"],
                       input="carols-password\n", capture_output=True, text=True, env=cli.env,
                       timeout=60, start_new_session=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("export NIMBUS_TOKEN=")


def test_get_token_and_use_it(server, cli, admin):
    r = cli.run("iam", "get-token")
    token, export = r.stdout.strip().splitlines()
    assert export == f"export NIMBUS_TOKEN={token}"
    assert jwt.decode(token, options={"verify_signature": False})["adm"] is True
    assert cli.json("iam", "list-users", env={"NIMBUS_TOKEN": token})[0]["username"] == "admin"
    data = cli.json("iam", "get-token")
    assert set(data) == {"token", "expires_at"}
    # A token alone is enough: a config without keys still works with NIMBUS_TOKEN.
    conf_path = cli.home / ".nimbus" / "config.json"
    conf = json.loads(conf_path.read_text())
    bare = cli.home / "bare.json"
    bare.write_text(json.dumps({"api_url": conf["api_url"], "tls_ca": conf["tls_ca"]}))
    os.chmod(bare, 0o600)
    users = cli.json("--config", str(bare), "iam", "list-users", env={"NIMBUS_TOKEN": token})
    assert users[0]["username"] == "admin"
    r = cli.run("--config", str(bare), "iam", "list-users", check=False)
    assert r.returncode != 0 and "no credentials" in r.stderr


def test_password_change_by_admin_ends_old_sessions(server, cli, admin):
    user = cli.json("iam", "create-user", "--username", "dan")
    cli.run("iam", "set-password", "--user-id", user["id"], "--password", "first-password")
    token = cli.json("iam", "login", "--username", "dan", "--password", "first-password")["token"]
    assert cli.json("--token", token, "node", "list") == []
    cli.run("iam", "set-password", "--user-id", user["id"], "--password", "second-password")
    r = cli.run("--token", token, "node", "list", check=False)
    assert r.returncode == 3 and "no longer valid" in r.stderr
    r = cli.run("iam", "set-password", "--user-id", user["id"], "--password", "short",
                check=False)
    assert r.returncode == 1 and "at least 8" in r.stderr


def test_create_key_writes_a_ready_connection_config(server, cli, admin, tmp_path):
    user = cli.json("iam", "create-user", "--username", "ci-bot")
    conn = tmp_path / "ci-bot.json"
    r = cli.run("iam", "create-key", "--user-id", user["id"], "--write-config", str(conn))
    saved = json.loads(conn.read_text())
    assert (conn.stat().st_mode & 0o777) == 0o600
    assert saved["secret_key"] not in r.stdout + r.stderr  # written, not printed
    assert saved["api_url"] == server.url and saved["tls_ca"] == server.ca_pem()
    assert saved["access_key"] in r.stdout
    # Ready to use as it is, and accepted by configure --from.
    bot = Cli(tmp_path / "bot")
    assert bot.run("--config", str(conn), "iam", "get-token").returncode == 0
    bot.run("configure", "--from", str(conn))
    again = cli.run("iam", "create-key", "--user-id", user["id"], "--write-config", str(conn),
                    check=False)
    assert again.returncode == 6 and "already exists" in again.stderr
    assert json.loads(conn.read_text()) == saved
    assert len(cli.json("iam", "list-keys", "--user-id", user["id"])) == 1
