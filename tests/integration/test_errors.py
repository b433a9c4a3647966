"""Error envelopes over HTTP (400/404/405/413) and CLI errors: one line, exit code, no traceback."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl

import pytest

from tests.integration.test_auth import Raw


@pytest.fixture
def raw(server, admin) -> Raw:
    return Raw(server)


def _one_error_line(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") or lines[0].startswith("Error: "), lines[0]
    return lines[0]


# -- HTTP ----------------------------------------------------------------------------------

def test_oversized_body_is_413(raw, admin):
    body = b'{"username": "' + b"a" * (1024 * 1024) + b'"}'
    headers = raw.signed(admin, "POST", "/v1/iam/users", body)
    conn = raw.conn()
    try:
        conn.putrequest("POST", "/v1/iam/users")
        for k, v in {**headers, "Content-Type": "application/json",
                     "Content-Length": str(len(body))}.items():
            conn.putheader(k, v)
        conn.endheaders()
        try:  # the server may answer (and close) before it has read everything
            for i in range(0, len(body), 65536):
                conn.send(body[i:i + 65536])
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        resp = conn.getresponse()
        status, doc = resp.status, json.loads(resp.read())
    finally:
        conn.close()
    assert status == 413 and "1 MiB" in doc["error"]
    # A body exactly at the limit is not refused for its size.
    ok = b'{"username": "' + b"a" * (1024 * 1024 - 16) + b'"}'
    assert len(ok) <= 1024 * 1024
    status, _, doc = raw.send("POST", "/v1/iam/users", ok, raw.signed(admin, "POST",
                                                                      "/v1/iam/users", ok))
    assert status == 400 and "username" in doc["error"]


def test_oversized_body_is_413_even_unauthenticated(raw):
    big = b"{" + b" " * (1024 * 1024 + 1) + b"}"
    conn = raw.conn()
    try:
        conn.putrequest("POST", "/v1/iam/login")
        conn.putheader("Content-Length", str(len(big)))
        conn.endheaders()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            conn.send(big)
        resp = conn.getresponse()
        assert resp.status == 413
    finally:
        conn.close()


def test_malformed_json_is_400(raw, admin):
    for body in (b"{", b"{'username': 'x'}", b'{"username": "x",}', b"\xff\xfe"):
        status, _, doc = raw.send("POST", "/v1/iam/users", body,
                                  raw.signed(admin, "POST", "/v1/iam/users", body))
        assert status == 400 and doc == {"error": "request body is not valid JSON"}, body
    status, _, doc = raw.send("POST", "/v1/iam/login", b"not json")
    assert status == 400


def test_body_that_is_not_an_object_is_400(raw, admin):
    for body in (b"[]", b'"x"', b"1", b"null"):
        status, _, doc = raw.send("POST", "/v1/iam/users", body,
                                  raw.signed(admin, "POST", "/v1/iam/users", body))
        assert status == 400 and "JSON object" in doc["error"], body


def test_unknown_field_is_400(raw, admin):
    status, _, doc = raw.hmac(admin, "POST", "/v1/iam/users",
                              {"username": "kim", "role": "superuser"})
    assert status == 400 and doc == {"error": "unknown field: role"}
    status, _, doc = raw.send("POST", "/v1/iam/login",
                              json.dumps({"username": "a", "password": "b", "otp": 1}).encode())
    assert status == 400 and "unknown field" in doc["error"]


def test_wrong_types_and_missing_fields_are_400(raw, admin):
    for body, word in (({"username": 5}, "username"), ({"admin": True}, "missing"),
                       ({"username": "ok", "admin": "yes"}, "admin"),
                       ({"username": "bad name"}, "username"),
                       ({"username": "x" * 64}, "username")):
        status, _, doc = raw.hmac(admin, "POST", "/v1/iam/users", body)
        assert status == 400 and word in doc["error"], (body, doc)


def test_malformed_ids_are_400_and_unknown_ids_404(raw, admin):
    status, _, doc = raw.hmac(admin, "DELETE", "/v1/iam/users/..%2f..%2fetc")
    assert status in (400, 404)
    status, _, doc = raw.hmac(admin, "DELETE", "/v1/iam/users/user-0000000000000000")
    assert status == 404 and doc == {"error": "no such user"}


def test_unknown_endpoint_is_404_and_wrong_method_405_as_json(raw):
    status, headers, doc = raw.send("GET", "/v1/nope")
    assert status == 404 and doc == {"error": "no such endpoint"}
    assert headers["content-type"].startswith("application/json")
    status, _, doc = raw.send("PUT", "/healthz")
    assert status == 405 and isinstance(doc, dict) and doc["error"]


def test_body_on_an_endpoint_without_one_is_400(raw, admin):
    body = b'{"x": 1}'
    status, _, doc = raw.send("GET", "/v1/iam/users", body,
                              raw.signed(admin, "GET", "/v1/iam/users", body))
    assert status == 400 and "no request body" in doc["error"]


def test_success_envelope_and_creation_status(raw, admin):
    status, headers, doc = raw.send("GET", "/healthz")
    assert (status, doc) == (200, {"data": {"status": "ok"}})
    assert headers["content-type"].startswith("application/json")
    status, _, doc = raw.hmac(admin, "POST", "/v1/iam/users", {"username": "lena"})
    assert status == 201 and doc["data"]["username"] == "lena"
    assert doc["data"]["id"].startswith("user-") and "password_hash" not in doc["data"]
    status, _, doc = raw.hmac(admin, "POST", "/v1/iam/users", {"username": "LENA"})
    assert status == 409 and "already exists" in doc["error"]


def test_ca_is_served_as_pem_without_auth(raw, server):
    status, headers, body = raw.send("GET", "/v1/ca")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert body == server.ca_pem()


# -- CLI -----------------------------------------------------------------------------------

def test_cli_api_errors_are_one_line_with_exit_codes(cli, admin):
    r = cli.run("iam", "create-user", "--username", "bad name", check=False)
    assert "username" in _one_error_line(r) and r.returncode == 1
    r = cli.run("iam", "delete-user", "user-0000000000000000", check=False)
    assert _one_error_line(r) == "error: no such user" and r.returncode == 4
    r = cli.run("iam", "delete-user", "nonsense", check=False)
    assert "invalid user id" in _one_error_line(r)
    cli.run("iam", "create-user", "--username", "mike")
    r = cli.run("iam", "create-user", "--username", "mike", check=False)
    assert "already exists" in _one_error_line(r) and r.returncode == 5
    r = cli.run("node", "describe", "node-0000000000000000", check=False)
    assert r.returncode == 4 and _one_error_line(r)


def test_cli_auth_errors(cli, admin):
    r = cli.run("--token-file", "-", "iam", "list-users", check=False, input="garbage\n")
    assert r.returncode == 3 and _one_error_line(r) == "error: invalid token"
    r = cli.run("iam", "list-users", check=False, env={"NIMBUS_TOKEN": "garbage"})
    assert r.returncode == 3 and _one_error_line(r) == "error: invalid token"
    r = cli.run("iam", "login", "--username", "admin", check=False,
                env={"NIMBUS_PASSWORD": "wrong-password"})
    assert r.returncode == 3 and "invalid username or password" in _one_error_line(r)


def test_cli_local_problems(cli, admin, tmp_path):
    config = cli.home / ".nimbus" / "config.json"
    os.chmod(config, 0o644)
    r = cli.run("node", "list", check=False)
    assert "chmod 600" in _one_error_line(r) and r.returncode == 6
    os.chmod(config, 0o600)
    r = cli.run("--config", str(tmp_path / "none.json"), "node", "list", check=False)
    assert "nimbus configure" in _one_error_line(r)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    os.chmod(bad, 0o600)
    r = cli.run("--config", str(bad), "node", "list", check=False)
    assert _one_error_line(r)
    r = cli.run("configure", "--from", str(bad), check=False)
    assert "not a JSON connection config" in _one_error_line(r)


def test_cli_unreachable_and_untrusted_servers(cli, admin, tmp_path, server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = json.loads((cli.home / ".nimbus" / "config.json").read_text())
    dead = tmp_path / "dead.json"
    dead.write_text(json.dumps({**conf, "api_url": f"https://127.0.0.1:{port}"}))
    os.chmod(dead, 0o600)
    r = cli.run("--config", str(dead), "node", "list", check=False)
    assert r.returncode == 2 and "cannot reach the API" in _one_error_line(r)
    # Another CA: the CLI refuses the server instead of trusting it.
    from nimbus.security.pki import create_ca

    other = tmp_path / "other.json"
    other.write_text(json.dumps({**conf, "tls_ca": create_ca(0)[0]}))
    os.chmod(other, 0o600)
    r = cli.run("--config", str(other), "node", "list", check=False)
    assert r.returncode == 2 and "TLS verification" in _one_error_line(r)


def test_cli_usage_errors_have_no_traceback(cli, admin):
    r = cli.run("iam", "create-user", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--username" in r.stderr
    r = cli.run("no-such-command", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = cli.run("node", "list", "-o", "yaml", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
