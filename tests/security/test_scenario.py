"""A full operator + node scenario against a --debug server, then a hunt for every secret.

Secrets (join secret and token, API secret keys, passwords, JWTs, private keys) may appear
only in the one response that creates them: never in logs, the audit log, other responses,
error messages, process arguments, or, for the secrets the server does not need, on disk.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nimbus.errors import NimbusError
from nimbus.security.pki import make_csr
from tests.harness import REPO, Cli, Server, base_env, bootstrap_admin
from tests.security.helpers import anonymous, join, join_body, operator, raw

EVENTS = {"bootstrap", "login.ok", "login.failed", "key.created", "key.deleted",
          "token.issued", "join.ok", "join.refused", "cert.issued", "cert.renewed",
          "cert.revoked", "node.deleted"}


def _pem_body(pem: str) -> list[str]:
    """The base64 lines of a PEM (long enough to be unique), without the armour."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")
            and len(line) >= 40]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scenario")
    (tmp / "cp").mkdir(exist_ok=True)
    server = Server(tmp / "cp", None, global_args=["--debug"])
    server.start()
    secrets: dict[str, str] = {}
    responses: list[str] = []  # every response that must not hold any secret
    try:
        secrets["bootstrap secret"] = (server.data_dir / "bootstrap.secret").read_text().strip()
        cli = Cli(tmp / "home")
        admin = bootstrap_admin(server, cli)
        secrets["admin secret key"] = admin["secret_key"]
        ops = operator(server, admin)
        user = ops.request("POST", "/v1/iam/users", {"username": "grace"})
        cli.run("iam", "set-password", "--user-id", user["id"],
                env={"NIMBUS_PASSWORD": "grace's password 1"})
        secrets["password"] = "grace's password 1"
        key = ops.request("POST", f"/v1/iam/users/{user['id']}/keys", {})
        secrets["user secret key"] = key["secret_key"]
        # A failed login whose password is a secret too, then a good one.
        status, _, body = raw(server, "POST", "/v1/iam/login",
                              json.dumps({"username": "grace",
                                          "password": "grace's password 2"}).encode())
        assert status == 401
        secrets["wrong password"] = "grace's password 2"
        responses.append(body.decode())
        login = cli.json("iam", "login", "--username", "grace",
                         env={"NIMBUS_PASSWORD": secrets["password"]})
        secrets["login JWT"] = login["token"]
        token = cli.json("iam", "get-token")
        secrets["HMAC JWT"] = token["token"]
        responses.append(json.dumps(cli.json("iam", "list-keys", "--user-id", user["id"])))
        # Nodes: add, a refused join, a real join, heartbeat, renew, delete.
        created = ops.request("POST", "/v1/nodes", {"ip_address": "192.0.2.30", "name": "n1"})
        from nimbus import wire

        fields = wire.decode_join_token(created["join_token"])
        secrets["join token"] = created["join_token"]
        secrets["join secret"] = fields["secret"]
        secrets["node WireGuard private key"] = fields["wg_private_key"]
        bad = join_body(fields, make_csr(fields["node_id"])[0], secret=fields["secret"][::-1])
        with pytest.raises(NimbusError) as refused:
            anonymous(server).request("POST", "/v1/nodes/join", bad)
        responses.append(refused.value.message)
        node = join(server, fields, tmp / "node")
        secrets["node TLS key"] = "\n".join(_pem_body(node.key_pem))
        nc = node.client(server)
        responses.append(json.dumps(nc.request("POST", "/v1/internal/heartbeat",
                                               {"hostname": "n1", "cpu": {"usage": 0.1}})))
        responses.append(json.dumps(nc.request("GET", f"/v1/internal/tasks/{node.node_id}")))
        csr, key2 = make_csr(node.node_id)
        nc.request("POST", "/v1/internal/renew", {"csr": csr})
        secrets["renewed node TLS key"] = "\n".join(_pem_body(key2))
        for path in ("/v1/nodes", f"/v1/nodes/{node.node_id}", "/v1/iam/users",
                     f"/v1/iam/users/{user['id']}", f"/v1/iam/users/{user['id']}/keys",
                     "/v1/audit", "/v1/version"):
            responses.append(json.dumps(ops.request("GET", path)))
        responses.append(anonymous(server).text("/metrics"))
        responses.append(json.dumps(ops.request("DELETE", f"/v1/nodes/{node.node_id}")))
        ops.request("DELETE", f"/v1/iam/users/{user['id']}/keys/{key['access_key']}")
        responses.append(cli.run("audit", "-o", "json").stdout)
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().decode()
        for name in ("ca.key", "server.key", "jwt.key", "store.key", "wg.key"):
            secrets[f"server {name}"] = "\n".join(
                _pem_body((server.data_dir / name).read_text())) or (
                server.data_dir / name).read_text().strip()
    finally:
        server.stop()
    yield {"server": server, "secrets": secrets, "responses": responses, "cmdline": cmdline,
           "tmp": tmp}


def _find(text: str, secrets: dict[str, str], allow: tuple[str, ...] = ()) -> list[str]:
    hits = []
    for label, value in secrets.items():
        if label in allow:
            continue
        for part in value.split("\n"):  # each PEM line separately
            if part and part in text:
                hits.append(label)
                break
    return hits


def test_server_debug_log_holds_no_secret(scenario):
    log = scenario["server"].log()
    assert "nimbus API listening" in log and "stopped" in log  # the whole run was captured
    assert _find(log, scenario["secrets"]) == []


def test_responses_and_error_messages_hold_no_secret(scenario):
    for text in scenario["responses"]:
        assert _find(text, scenario["secrets"]) == [], text[:300]


def test_server_process_arguments_hold_no_secret(scenario):
    assert _find(scenario["cmdline"], scenario["secrets"]) == []


def test_audit_log_records_every_security_event_and_no_secret(scenario):
    path = scenario["server"].data_dir / "audit.log"
    assert os.stat(path).st_mode & 0o777 == 0o600
    text = path.read_text()
    events = [json.loads(line) for line in text.splitlines()]
    assert {e["event"] for e in events} >= EVENTS, EVENTS - {e["event"] for e in events}
    refused = [e for e in events if e["event"] == "join.refused"]
    assert refused and all(e.get("reason") for e in refused)
    assert _find(text, scenario["secrets"]) == []
    # The CLI shows the same events.
    shown = json.loads(scenario["responses"][-1])
    assert {e["event"] for e in shown} >= EVENTS


def test_no_secret_key_password_or_join_secret_in_any_store_file(scenario):
    """API secret keys are sealed with store.key; only hashes of passwords and join secrets."""
    data = scenario["server"].data_dir
    store_text = "".join(p.read_text() for p in sorted((data / "store").glob("*.json")))
    assert "enc1:" in store_text  # the keys are there, sealed
    kept = ("server store.key", "server ca.key", "server jwt.key", "server wg.key",
            "server server.key")
    assert _find(store_text, scenario["secrets"], kept) == []


def test_node_private_keys_are_never_stored_by_the_control_plane(scenario):
    data = scenario["server"].data_dir
    everything = ""
    for dirpath, _, files in os.walk(data):
        for f in files:
            everything += Path(dirpath, f).read_bytes().decode(errors="replace")
    node_secrets = {k: v for k, v in scenario["secrets"].items()
                    if k in ("node WireGuard private key", "node TLS key", "renewed node TLS key",
                             "join secret", "join token", "password", "wrong password",
                             "login JWT", "HMAC JWT", "user secret key", "admin secret key")}
    assert _find(everything, node_secrets) == []
    # The public half of the WireGuard key is what the server keeps.
    raw_key = base64.b64decode(node_secrets["node WireGuard private key"])
    assert len(raw_key) == 32


@pytest.mark.skipif(not (REPO / "nimbus" / "cli" / "agent.py").exists(),
                    reason="the agent command is not there yet")
def test_agent_join_keeps_the_token_out_of_its_process_arguments(server, ops, tmp_path):
    created = ops.request("POST", "/v1/nodes", {"ip_address": "192.0.2.1", "name": "agent1"})
    token = created["join_token"]
    env = base_env(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nimbus", "agent", "--join", "--token-file", "-",
         "--no-wireguard", "--data-dir", str(tmp_path / "agent")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        start_new_session=True)
    try:
        proc.stdin.write(token.encode() + b"\n")
        proc.stdin.close()
        from nimbus import wire

        fields = wire.decode_join_token(token)
        deadline = time.monotonic() + 30
        joined = False
        while time.monotonic() < deadline and proc.poll() is None:
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
            assert fields["secret"] not in cmdline and token not in cmdline
            assert fields["wg_private_key"] not in cmdline
            if ops.request("GET", f"/v1/nodes/{fields['node_id']}")["status"] != "pending":
                joined = True
                break
            time.sleep(0.2)
        if not joined:
            out = proc.stdout.read().decode() if proc.poll() is not None else "(running)"
            pytest.skip(f"the agent did not join (work in progress?): {out[-500:]}")
        for path in (tmp_path / "agent").rglob("*"):
            if path.is_file() and path.name.endswith((".key", ".toml", ".json")):
                assert path.stat().st_mode & 0o077 == 0, path
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
