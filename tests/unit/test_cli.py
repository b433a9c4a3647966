"""The CLI on click, driven with click's CliRunner: parsing, help, errors and exit codes.

`cli.main` in standalone mode is `nimbus.cli.main.run`, so a runner result is what the
binary does: one-line errors on stderr, Nimbus's exit codes (usage errors 2).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nimbus.cli import main
from nimbus.cli.audit import parse_since
from nimbus.cli.main import cli
from nimbus.errors import BadRequest, ConfigError


def invoke(*args: str, **kw):
    kw.setdefault("env", {"NIMBUS_CLI_CONFIG": "/nonexistent/config.json", "NIMBUS_TOKEN": ""})
    return CliRunner(mix_stderr=False).invoke(cli, list(args), **kw)


def test_root_help_lists_every_noun_from_the_table(monkeypatch):
    monkeypatch.setitem(main.COMMANDS, "far", ("no.such.module", "far", "Lives elsewhere."))
    result = invoke("--help")
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: nimbus [OPTIONS] COMMAND [ARGS]...")
    assert "  far " in result.stdout and "Lives elsewhere." in result.stdout  # not imported
    assert "  completion " in result.stdout and "-h, --help" in result.stdout


@pytest.mark.parametrize("args", [[], ["node"], ["lab"]])
def test_a_group_alone_shows_its_help_on_stderr_and_exits_2(args):
    result = invoke(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"Usage: {' '.join(['nimbus', *args])} [OPTIONS] COMMAND")
    assert "Commands:" in result.stderr


@pytest.mark.parametrize(("args", "message", "where"), [
    (["node", "list", "-o", "xml"], "'xml' is not one of 'table', 'json'", "nimbus node list"),
    (["node", "frobnicate"], "no such command 'frobnicate'", "nimbus node"),
    (["node", "lst"], "no such command 'lst'; did you mean 'list'?", "nimbus node"),
    (["nod", "list"], "did you mean 'node'?", "nimbus"),
    (["node", "describe"], "missing argument 'NODE'", "nimbus node describe"),
    (["node", "describe", "a", "b"], "unexpected extra argument (b)", "nimbus node describe"),
    (["node", "add"], "missing option '--ip'", "nimbus node add"),
    (["node", "list", "--nope"], "no such option: --nope", "nimbus node list"),
    (["node", "list", "--ouput"], "no such option: --ouput; did you mean --output?",
     "nimbus node list"),
    (["--debug=yes", "node", "list"], "option '--debug' does not take a value", None),
    (["lab", "up", "--nodes", "0"], "0 is not in the range 1<=x<=240", "nimbus lab up"),
    (["audit", "--since", "nan"], "'nan' is no time", "nimbus audit"),
    (["completion", "tcsh"], "'tcsh' is not one of 'bash', 'zsh', 'fish'", "nimbus completion"),
    (["--config", "/tmp/x.json", "serve"], "`nimbus serve` does not use the CLI's --config",
     "nimbus"),
    (["--token", "t", "doctor"], "`nimbus doctor` does not use the CLI's --token", "nimbus"),
    (["--config", "/tmp/x.json", "lab", "status"], "does not use the CLI's --config", "nimbus"),
    (["agent", "--api-url", "https://x", "install"], "--api-url cannot be used with "
     "`nimbus agent install`: join first", "nimbus agent install"),
    (["agent", "--token", "t"], "only make sense with --join", "nimbus agent"),
])
def test_usage_errors_are_one_line_exit_2_with_the_help_to_read(args, message, where):
    result = invoke(*args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == "", result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    if where is not None:  # click's parser names no command for a few of its errors
        assert result.stderr.rstrip().endswith(f"(see `{where} --help`)"), result.stderr


def test_help_anywhere_among_the_options_wins(monkeypatch):
    result = invoke("node", "list", "-o", "xml", "--help")  # eager: before the bad value
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: nimbus node list [OPTIONS]\n")
    assert "-o, --output [table|json]" in result.stdout and "[default: table]" in result.stdout
    assert "--get-token" not in invoke("node", "add", "-h").stdout  # hidden


def test_a_nimbus_error_is_its_message_and_its_exit_code(tmp_path):
    result = invoke("--config", str(tmp_path / "none.json"), "node", "list")
    assert result.exit_code == ConfigError.exit_code == 6
    assert result.stderr == f"error: no CLI config at {tmp_path / 'none.json'}; run `nimbus " \
                            "configure` first\n"


def test_debug_as_the_root_option_lets_the_exception_through(tmp_path):
    result = invoke("--debug", "--config", str(tmp_path / "none.json"), "node", "list")
    assert isinstance(result.exception, ConfigError)  # the binary prints its traceback


def test_version_option():
    from nimbus import __version__

    result = invoke("--version")
    assert (result.exit_code, result.stdout) == (0, f"nimbus {__version__}\n")


def test_a_secret_flag_value_works_with_a_warning_and_its_file_form(tmp_path):
    from nimbus.cli.secrets import read_secret

    runner = CliRunner(mix_stderr=False)
    with runner.isolation() as (_, err):
        assert read_secret("password", flag="--password", value="s3cret") == "s3cret"
    assert b"--password on the command line is visible in ps" in err.getvalue()
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert read_secret("password", flag="--password", file=str(secret)) == "from-file"
    assert read_secret("password", flag="--password", envvar="PW", env={"PW": "e"}) == "e"
    with pytest.raises(ConfigError, match="give --password-file FILE"), \
            runner.isolation(input=""):  # no terminal to prompt on
        read_secret("password", flag="--password")


def test_lab_cli_passes_everything_after_its_own_options_untouched(monkeypatch):
    from nimbus.cli import lab

    seen = []

    class FakeLab:
        def cli_argv(self, args):
            seen.append(args)
            return ["inner"], {}

    monkeypatch.setattr(lab, "_open", lambda lab_id: seen.append(lab_id) or FakeLab())
    monkeypatch.setattr(lab.subprocess, "call", lambda argv, env: 7)
    result = invoke("lab", "cli", "--id", "a1", "node", "list", "--debug", "-o", "json")
    assert result.exit_code == 7  # the inner command's code
    assert seen == ["a1", ["node", "list", "--debug", "-o", "json"]]
    assert invoke("lab", "cli", "--", "--id", "x").exit_code == 7
    assert seen[-1] == ["--id", "x"]


def _unit(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_serve_options_mean_the_same_before_and_after_install(tmp_path):
    config = tmp_path / "api.toml"
    config.write_text(f'data_dir = "{tmp_path / "cp"}"\nwireguard = false\n')
    before = _unit("serve", "--config", str(config), "install", "--dry-run")
    after = _unit("serve", "install", "--config", str(config), "--dry-run")
    assert before == after
    assert f"ReadWritePaths={tmp_path / 'cp'} /run" in before
    assert f"serve --config {config}" in before
    clash = invoke("serve", "--config", str(config), "install", "--config", "/other.toml",
                   "--dry-run")
    assert clash.exit_code == 2 and "--config given to both" in clash.stderr


def test_agent_options_mean_the_same_before_and_after_install(tmp_path):
    before = _unit("agent", "--data-dir", str(tmp_path / "a"), "--no-wireguard", "install",
                   "--dry-run")
    after = _unit("agent", "install", "--data-dir", str(tmp_path / "a"), "--no-wireguard",
                  "--dry-run")
    assert before == after and f"agent --data-dir {tmp_path / 'a'} --no-wireguard" in before


def test_completion_scripts_name_nimbus_and_its_variable():
    bash = _unit("completion", "bash")
    assert "_NIMBUS_COMPLETE=bash_complete $1" in bash and "-F _nimbus_completion nimbus" in bash
    assert _unit("completion", "zsh").startswith("#compdef nimbus")
    assert "complete --no-files --command nimbus" in _unit("completion", "fish")
    assert "~/.local/share/bash-completion/completions/nimbus" in _unit("completion", "--help")


def _complete(words: str, shell: str = "bash") -> str:
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    result = invoke(env={"_NIMBUS_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
                         "COMP_CWORD": cword, "NIMBUS_CLI_CONFIG": "/nonexistent/config.json"})
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    return result.stdout


def test_completion_of_commands_and_options():
    assert _complete("nimbus no") == "plain,node\n"
    assert _complete("nimbus node de") == "plain,delete\nplain,describe\n"
    assert "plain,--output" in _complete("nimbus node list --ou")


def test_file_and_directory_options_complete_as_paths_in_the_shell():
    assert _complete("nimbus iam login --password-file /e").startswith("file,/e")
    assert _complete("nimbus serve --data-dir /v").startswith("dir,/v")


def test_completion_from_the_api_is_silent_when_there_is_none():
    assert _complete("nimbus node describe ").strip() == ""
    assert _complete("nimbus swarm add-node --swarm ").strip() == ""


def test_since_takes_durations_times_and_finite_epochs():
    assert parse_since("2h", 10_000.0) == 10_000.0 - 7200
    assert parse_since("999999999999d", 10_000.0) == 0.0  # before 1970: everything
    assert parse_since("2026-11-26T21:37:17Z", 0) == 1795729037.0
    assert parse_since("1795729037.5", 0) == 1795729037.5
    for bad in ("nan", "inf", "-inf", "1e309", "-1", "1e12", "bogus", "2h30m"):
        with pytest.raises(BadRequest):
            parse_since(bad, 10_000.0)
