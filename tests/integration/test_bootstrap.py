"""Bootstrap (design.md §3.3): local on the host, remote with the one-time secret, never twice."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
from pathlib import Path

import pytest

from nimbus.security.pki import ca_fingerprint, create_ca
from nimbus.server.iam import bootstrap_proof
from tests.harness import Cli, Server, bootstrap_admin
from tests.integration.test_auth import Raw


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _one_line_error(r) -> str:
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_local_bootstrap_prints_the_connection_config(server, cli):
    r = cli.run("bootstrap", "--data-dir", str(server.data_dir))
    conn = json.loads(r.stdout)
    assert set(conn) == {"api_url", "access_key", "secret_key", "tls_ca"}
    assert conn["api_url"] == server.url
    assert conn["tls_ca"] == server.ca_pem()
    assert conn["access_key"].startswith("NBUS")
    cli_file = cli.home / "conn.json"
    cli_file.write_text(r.stdout)
    cli.run("configure", "--from", str(cli_file))
    assert [u["username"] for u in cli.json("iam", "list-users")] == ["admin"]
    assert not (server.data_dir / "bootstrap.secret").exists()


def test_output_file_is_private_and_second_bootstrap_is_refused(server, cli):
    admin = bootstrap_admin(server, cli)
    out = server.tmp / "admin.json"
    assert _mode(out) == 0o600
    assert json.loads(out.read_text()) == admin
    r = cli.run("bootstrap", "--data-dir", str(server.data_dir), check=False)
    assert "already bootstrapped" in _one_line_error(r) and r.returncode == 5
    assert r.stdout == ""
    assert [u["username"] for u in cli.json("iam", "list-users")] == ["admin"]


def test_local_bootstrap_works_without_a_running_server(tmp_path):
    (tmp_path / "cp").mkdir()
    srv = Server(tmp_path / "cp")
    cli = Cli(tmp_path / "home")
    conn_file = tmp_path / "conn.json"
    cli.run("bootstrap", "--data-dir", str(srv.data_dir), "--server-config",
            str(srv.config_path), "--output", str(conn_file))
    conn = json.loads(conn_file.read_text())
    assert conn["api_url"] == srv.url
    assert _mode(srv.data_dir) == 0o700
    srv.start()
    try:
        assert conn["tls_ca"] == srv.ca_pem()  # the server kept the CA bootstrap made
        cli.run("configure", "--from", str(conn_file))
        assert cli.json("node", "list") == []
    finally:
        srv.stop()


def test_bootstrap_secret_is_private_and_only_before_bootstrap(server):
    secret = server.data_dir / "bootstrap.secret"
    assert secret.exists() and _mode(secret) == 0o600
    assert len(secret.read_text().strip()) >= 64


def test_remote_bootstrap_with_the_secret_file(server, cli, tmp_path):
    secret = server.data_dir / "bootstrap.secret"
    out = tmp_path / "remote.json"
    cli.run("bootstrap", "--api-url", server.url, "--bootstrap-secret-file", str(secret),
            "--output", str(out))
    conn = json.loads(out.read_text())
    assert conn["tls_ca"] == server.ca_pem() and conn["api_url"] == server.url
    assert not secret.exists(), "the one-time secret must be gone after use"
    cli.run("configure", "--from", str(out))
    assert cli.json("node", "list") == []
    # Local and remote attempts are now refused.
    r = cli.run("bootstrap", "--data-dir", str(server.data_dir), check=False)
    assert "already bootstrapped" in _one_line_error(r)
    r = cli.run("bootstrap", "--api-url", server.url, check=False,
                env={"NIMBUS_BOOTSTRAP_SECRET": "0" * 64})
    assert "already bootstrapped" in _one_line_error(r) and r.returncode == 5


def test_remote_bootstrap_secret_from_stdin_and_env(server, cli):
    secret = (server.data_dir / "bootstrap.secret").read_text()
    r = cli.run("bootstrap", "--api-url", server.url, "--bootstrap-secret-file", "-",
                input=secret)
    assert json.loads(r.stdout)["access_key"].startswith("NBUS")


def test_remote_bootstrap_with_the_wrong_secret_is_refused(server, cli):
    secret_file = server.data_dir / "bootstrap.secret"
    r = cli.run("bootstrap", "--api-url", server.url, check=False,
                env={"NIMBUS_BOOTSTRAP_SECRET": secrets.token_hex(32)})
    assert "does not match" in _one_line_error(r) and r.returncode == 3
    assert r.stdout == ""
    assert secret_file.exists()
    # Nothing was created: the real secret still works afterwards.
    r = cli.run("bootstrap", "--api-url", server.url, check=False,
                env={"NIMBUS_BOOTSTRAP_SECRET": secret_file.read_text().strip()})
    assert r.returncode == 0, r.stderr


def test_remote_bootstrap_proof_is_bound_to_the_ca(server):
    """A man in the middle with another CA cannot relay a proof made for its own CA."""
    raw = Raw(server)
    secret = (server.data_dir / "bootstrap.secret").read_text().strip()
    nonce = secrets.token_hex(16)
    mitm_fp = ca_fingerprint(create_ca(0)[0])
    body = {"ca_fingerprint": mitm_fp, "nonce": nonce,
            "proof": bootstrap_proof(secret, mitm_fp, nonce)}
    status, _, doc = raw.send("POST", "/v1/bootstrap", json.dumps(body).encode())
    assert status == 403
    real_fp = ca_fingerprint(server.ca_pem())
    body = {"ca_fingerprint": real_fp, "nonce": nonce, "proof": "0" * 64}
    assert raw.send("POST", "/v1/bootstrap", json.dumps(body).encode())[0] == 403
    body = {"ca_fingerprint": real_fp, "nonce": nonce,
            "proof": bootstrap_proof(secret, real_fp, nonce), "admin": True}
    assert raw.send("POST", "/v1/bootstrap", json.dumps(body).encode())[0] == 400
    body.pop("admin")
    status, _, doc = raw.send("POST", "/v1/bootstrap", json.dumps(body).encode())
    assert status == 201 and doc["data"]["user"]["username"] == "admin"
    status, _, doc = raw.send("POST", "/v1/bootstrap", json.dumps(body).encode())
    assert status == 409  # the same proof twice is not a second admin


def test_remote_bootstrap_guessing_is_throttled(server):
    raw = Raw(server)
    fp = ca_fingerprint(server.ca_pem())
    statuses = []
    for _ in range(6):
        body = {"ca_fingerprint": fp, "nonce": secrets.token_hex(16), "proof": "1" * 64}
        status, headers, _ = raw.send("POST", "/v1/bootstrap", json.dumps(body).encode())
        statuses.append(status)
    assert statuses == [403] * 5 + [429]
    assert int(headers["retry-after"]) >= 1


def test_configure_from_file_with_api_url_override(server, cli, admin, tmp_path):
    conn = server.tmp / "admin.json"
    other = Cli(tmp_path / "other")
    other.run("configure", "--from", str(conn), "--api-url", f"https://localhost:{server.port}")
    saved = json.loads((other.home / ".nimbus" / "config.json").read_text())
    assert saved["api_url"] == f"https://localhost:{server.port}"
    assert _mode(other.home / ".nimbus" / "config.json") == 0o600
    assert other.json("node", "list") == []  # the server cert covers localhost too
    r = other.run("configure", "--api-url", "http://x:1", "--access-key", "a", "--secret-key",
                  "b", check=False)
    assert "https://" in _one_line_error(r)


def test_the_servers_hint_names_its_data_dir_and_plain_bootstrap_refuses_another(
        server, cli, tmp_path):
    assert f"nimbus bootstrap --data-dir {server.data_dir}" in server.log()
    from nimbus.server import instances

    record = instances.runtime_dir() / f"{server.proc.pid}.json"
    assert json.loads(record.read_text())["data_dir"] == str(server.data_dir.resolve())
    # Plain `nimbus bootstrap` (the default data dir: /var/lib/nimbus as root, else an empty
    # HOME's ~/.nimbus) must not create a second control plane while this one runs elsewhere.
    home = Cli(tmp_path / "plain")
    default = Path("/var/lib/nimbus") if os.geteuid() == 0 else home.home / ".nimbus"
    if (default / "ca.crt").exists() or Path("/etc/nimbus/api.toml").exists():
        pytest.skip(f"a real installation lives in {default} or /etc/nimbus")
    existed = default.exists()
    try:
        r = home.run("bootstrap", check=False)
        assert r.returncode == 5 and "uses data dir" in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and not (default / "ca.crt").exists()
    finally:
        if not existed and default.exists():
            shutil.rmtree(default)
    # The hint's command works.
    cli.run("bootstrap", "--data-dir", str(server.data_dir))
    server.stop()
    assert not record.exists()
