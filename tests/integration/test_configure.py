"""`nimbus configure`: URL validation, the CA fingerprint check, password-only users, secrets."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess

import pytest

from nimbus.cli import trust
from nimbus.security.pki import create_ca
from tests.harness import Cli, nimbus_argv


def _saved(cli: Cli) -> dict | None:
    path = cli.home / ".nimbus" / "config.json"
    return json.loads(path.read_text()) if path.exists() else None


def _ca_file(server, tmp_path):
    path = tmp_path / "ca.crt"
    path.write_text(server.ca_pem())
    return str(path)


def test_a_password_only_user_configures_logs_in_and_uses_the_export(server, cli, admin,
                                                                     tmp_path):
    user_id = next(u["id"] for u in cli.json("iam", "list-users") if u["admin"])
    username = next(u["username"] for u in cli.json("iam", "list-users") if u["admin"])
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery staple\n")
    cli.run("iam", "set-password", "--user-id", user_id, "--password-file", str(pw))

    laptop = Cli(tmp_path / "laptop")
    out = laptop.run("configure", "--api-url", server.url, "--tls-ca", _ca_file(server, tmp_path))
    assert "nimbus iam login" in out.stdout
    saved = _saved(laptop)
    assert saved["access_key"] is None and saved["secret_key"] is None
    assert (laptop.home / ".nimbus" / "config.json").stat().st_mode & 0o777 == 0o600

    login = laptop.run("iam", "login", "--username", username, "--password-file", str(pw))
    export = login.stdout.strip().splitlines()[-1]
    assert export.startswith("export NIMBUS_TOKEN=")
    token = export.removeprefix("export NIMBUS_TOKEN=")
    assert laptop.json("node", "list", env={"NIMBUS_TOKEN": token}) == []
    # Without the token the config alone has no credentials: one clear line.
    r = laptop.run("node", "list", check=False)
    assert r.returncode == 6 and "NIMBUS_TOKEN" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize("url", ["https://127.0.0.1:17443x", "https://127.0.0.1:0",
                                 "https://127.0.0.1:70000", "http://127.0.0.1:8443",
                                 "https://:8443", "127.0.0.1:8443", "https://h:1?x=1"])
def test_configure_rejects_a_url_that_cannot_work(cli, tmp_path, url):
    ca = tmp_path / "ca.crt"
    ca.write_text(create_ca(0)[0])
    r = cli.run("configure", "--api-url", url, "--offline", "--tls-ca", str(ca), check=False)
    assert r.returncode == 1 and "https://HOST[:PORT]" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and _saved(cli) is None


def test_a_saved_bad_url_is_one_line_not_a_value_error(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"api_url": "https://h:17443x"}))
    os.chmod(bad, 0o600)
    r = cli.run("--config", str(bad), "node", "list", check=False)
    assert r.returncode == 6 and "ValueError" not in r.stderr and "nimbus configure" in r.stderr


def test_without_a_ca_non_interactive_needs_the_fingerprint(server, cli, admin, tmp_path):
    laptop = Cli(tmp_path / "laptop")
    r = laptop.run("configure", "--api-url", server.url, check=False, input="")
    assert r.returncode == 6 and "--ca-fingerprint" in r.stderr and r.stderr.count("\n") == 1
    assert _saved(laptop) is None

    wrong = trust.fingerprint(create_ca(0)[0])
    r = laptop.run("configure", "--api-url", server.url, "--ca-fingerprint", wrong, check=False)
    assert r.returncode == 3 and "man in the" in r.stderr and _saved(laptop) is None

    for given in (trust.fingerprint(server.ca_pem()), trust.hex_fingerprint(server.ca_pem())):
        laptop.run("configure", "--api-url", server.url, "--ca-fingerprint", given)
        assert _saved(laptop)["tls_ca"] == server.ca_pem()
        assert laptop.run("version").returncode == 0


def _interactive_configure(laptop: Cli, url: str, answer: str) -> subprocess.CompletedProcess:
    primary, secondary = pty.openpty()
    try:
        os.write(primary, answer.encode())
        return subprocess.run([*nimbus_argv(), "configure", "--api-url", url], stdin=secondary,
                              capture_output=True, text=True, env=laptop.env, timeout=60,
                              check=False)
    finally:
        os.close(primary)
        os.close(secondary)


def test_on_a_terminal_the_fingerprint_is_shown_and_must_be_confirmed(server, cli, admin,
                                                                      tmp_path):
    laptop = Cli(tmp_path / "laptop")
    no = _interactive_configure(laptop, server.url, "n\n")
    assert trust.fingerprint(server.ca_pem()) in no.stderr
    assert no.returncode == 3 and _saved(laptop) is None
    yes = _interactive_configure(laptop, server.url, "y\n")
    assert yes.returncode == 0, yes.stderr
    assert _saved(laptop)["tls_ca"] == server.ca_pem()


def test_an_unreachable_server_is_not_saved(cli, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = cli.run("configure", "--api-url", f"https://127.0.0.1:{port}", "--ca-fingerprint",
                "SHA256:x", check=False)
    assert r.returncode == 2 and "cannot reach" in r.stderr and _saved(cli) is None


def test_secret_key_from_stdin_or_flag_with_a_warning(server, cli, admin, tmp_path):
    ca = _ca_file(server, tmp_path)
    laptop = Cli(tmp_path / "laptop")
    quiet = laptop.run("configure", "--api-url", server.url, "--tls-ca", ca, "--access-key",
                       admin["access_key"], "--secret-key-file", "-",
                       input=admin["secret_key"] + "\n")
    assert "warning" not in quiet.stderr
    assert laptop.json("node", "list") == []
    loud = laptop.run("configure", "--api-url", server.url, "--tls-ca", ca, "--access-key",
                      admin["access_key"], "--secret-key", admin["secret_key"])
    assert "visible in ps" in loud.stderr and admin["secret_key"] not in loud.stderr
    half = laptop.run("configure", "--api-url", server.url, "--tls-ca", ca, "--access-key",
                      admin["access_key"], check=False, input="")
    assert half.returncode == 6 and "secret key needed" in half.stderr
