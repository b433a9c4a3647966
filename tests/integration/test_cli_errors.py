"""The CLI failure contract: one line, the right exit code, `--debug` only as root option."""

from __future__ import annotations


def test_a_bad_output_format_is_one_line_and_exit_2(cli):
    result = cli.run("node", "list", "-o", "xml", check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "'xml' is not one of 'table', 'json'" in result.stderr
    assert "nimbus node list --help" in result.stderr


def test_an_unknown_command_is_one_line(cli):
    result = cli.run("node", "frobnicate", check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr


def test_no_arguments_prints_the_help(cli):
    result = cli.run(check=False)
    assert "Commands:" in result.stdout + result.stderr


def test_debug_is_recognised_only_as_the_root_option(cli, tmp_path):
    missing = str(tmp_path / "no-such-config.json")
    # "--debug" as an argument of a subcommand is just an argument: no traceback.
    result = cli.run("--config", missing, "node", "describe", "--", "--debug", check=False)
    assert result.returncode == 6, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    # As the root option it shows the traceback.
    debug = cli.run("--debug", "--config", missing, "node", "list", check=False)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_the_whole_output_arrives_and_a_closed_pipe_is_a_quiet_exit(server, cli, admin):
    """A command ends with os._exit after flushing (nimbus/__main__.py): nothing may be lost,
    whether stdout is a pipe read to the end or one the reader closed at once."""
    import json
    import subprocess

    from tests.harness import nimbus_argv

    for i in range(30):
        cli.run("node", "add", "--ip", f"192.0.2.{i + 1}", "--name", f"pipe-{i:02d}")
    full = cli.run("node", "list", "-o", "json")  # read to the end through a pipe
    assert len(json.loads(full.stdout)) == 30 and full.stderr == ""
    proc = subprocess.Popen([*nimbus_argv(), "node", "list", "-o", "json"], env=cli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `nimbus node list | head -0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 1) and "Traceback" not in err and err == "", err
