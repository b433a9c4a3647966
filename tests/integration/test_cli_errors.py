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
