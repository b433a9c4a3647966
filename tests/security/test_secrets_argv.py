"""Secrets stay off argv: files, env vars and a no-echo prompt; a flag value is warned about."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from tests.harness import nimbus_argv

PASSWORD = "ops-password-1"


def _user_with_password(cli):
    user = cli.json("iam", "create-user", "--username", "ops")
    cli.run("iam", "set-password", "--user-id", user["id"], "--password-file", "-",
            input=PASSWORD + "\n")
    return user


def test_a_secret_given_as_a_flag_value_works_but_is_warned_about(server, cli, admin):
    _user_with_password(cli)
    r = cli.run("iam", "login", "--username", "ops", "--password", PASSWORD)
    assert "warning: --password" in r.stderr and "ps" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and PASSWORD not in r.stderr
    token = r.stdout.splitlines()[0]
    r = cli.run("--token", token, "node", "list")
    assert "warning: --token" in r.stderr and token not in r.stderr


def test_secrets_come_from_files_stdin_and_env_without_a_warning(server, cli, admin, tmp_path):
    user = _user_with_password(cli)
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSWORD + "\n")
    r = cli.run("iam", "login", "--username", "ops", "--password-file", str(pw_file))
    assert r.stderr == "" and r.stdout.startswith("ey")
    r = cli.run("iam", "login", "--username", "ops", env={"NIMBUS_PASSWORD": PASSWORD})
    assert r.stderr == ""
    token = r.stdout.splitlines()[0]
    r = cli.run("--token-file", "-", "iam", "list-keys", "--user-id", user["id"],
                input=token + "\n")
    assert r.stderr == "" and r.stdout.strip() == "(none)"
    r = cli.run("iam", "list-keys", "--user-id", user["id"], env={"NIMBUS_TOKEN": token})
    assert r.stderr == ""


def test_no_secret_and_no_terminal_is_one_clear_error(server, cli, admin):
    _user_with_password(cli)
    r = subprocess.run([*nimbus_argv(), "iam", "login", "--username", "ops"], env=cli.env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                       start_new_session=True, check=False)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        "error: password needed: give --password-file FILE (- for stdin), NIMBUS_PASSWORD, "
        "or run on a terminal to be prompted"]
    r = subprocess.run([*nimbus_argv(), "bootstrap", "--api-url", server.url], env=cli.env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                       start_new_session=True, check=False)
    assert r.returncode != 0 and "--bootstrap-secret-file" in r.stderr
    assert "Traceback" not in r.stderr


def test_both_a_flag_and_a_file_is_refused(server, cli, admin, tmp_path):
    (tmp_path / "pw").write_text(PASSWORD)
    r = cli.run("iam", "login", "--username", "ops", "--password", PASSWORD,
                "--password-file", str(tmp_path / "pw"), check=False)
    assert r.returncode != 0 and "not both" in r.stderr


def _run_on_a_terminal(argv, env, answers, timeout=60):
    """Run argv on a pseudo-terminal, typing each answer after its prompt; (rc, screen)."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execvpe(argv[0], argv, env)  # noqa: S606 - argv is ours, no shell wanted
    screen, deadline, pending = b"", time.monotonic() + timeout, list(answers)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        if pending and screen.rstrip().endswith(b":"):
            os.write(fd, pending.pop(0).encode() + b"\n")
            screen += b"\n<typed>\n"
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


def test_prompt_on_a_terminal_does_not_echo(server, cli, admin):
    user = cli.json("iam", "create-user", "--username", "tty")
    rc, screen = _run_on_a_terminal(
        [*nimbus_argv(), "iam", "set-password", "--user-id", user["id"]], cli.env,
        ["tty-password-1", "tty-password-1"])
    assert rc == 0, screen
    assert "new password" in screen and "tty-password-1" not in screen
    rc, screen = _run_on_a_terminal(
        [*nimbus_argv(), "iam", "login", "--username", "tty"], cli.env, ["tty-password-1"])
    assert rc == 0, screen
    assert "tty-password-1" not in screen and "export NIMBUS_TOKEN=" in screen
