"""nimbus/cli/cmdline.py: declaring commands, parsing argv into them, rendering help."""

from __future__ import annotations

import pytest

from nimbus.cli import cmdline


def _tool():
    """A small command tree shaped like Nimbus's: a root group, a subgroup, a passthrough."""
    calls: list[tuple[str, dict]] = []

    @cmdline.group("tool")
    @cmdline.option("--config", "config_path", type=cmdline.Path(dir_okay=False),
                    envvar="TOOL_CONFIG", help="Config file.")
    @cmdline.option("--debug", is_flag=True, help="Debug.")
    @cmdline.pass_context
    def root(ctx, config_path, debug):
        """The tool."""
        ctx.obj["root"] = (config_path, debug)

    @root.command("run")
    @cmdline.option("-o", "--output", "fmt", type=cmdline.Choice(["table", "json"]),
                    default="table", show_default=True, help="Output format.")
    @cmdline.option("--ip", required=True, help="An address.")
    @cmdline.option("--count", type=cmdline.IntRange(1, 5), default=1)
    @cmdline.option("--secret-thing", hidden=True)
    @cmdline.argument("node_ref", metavar="NODE")
    @cmdline.pass_context
    def run(ctx, fmt, ip, count, secret_thing, node_ref):
        """Run something on NODE.

        A second paragraph that is long enough to be wrapped over more than one line of
        the help text when it is shown.
        """
        calls.append(("run", dict(fmt=fmt, ip=ip, count=count, node=node_ref,
                                  root=ctx.obj["root"], path=ctx.command_path)))

    @root.command("exec", passthrough=True)
    @cmdline.option("--id", "lab_id")
    @cmdline.argument("args", nargs=-1)
    def exec_(lab_id, args):
        """Pass the rest on."""
        calls.append(("exec", dict(lab_id=lab_id, args=args)))

    @cmdline.group(invoke_without_command=True)
    @cmdline.option("--flag", is_flag=True)
    @cmdline.pass_context
    def daemon(ctx, flag):
        """Run, or manage, the daemon."""
        calls.append(("daemon", dict(flag=flag, sub=ctx.invoked_subcommand)))

    @daemon.command()
    def install():
        """Install it."""
        calls.append(("install", {}))

    root.commands["daemon"] = daemon
    return root, calls


def _run(argv, env=None, monkeypatch=None):
    root, calls = _tool()
    root.main(argv, prog_name="tool", obj={})
    return calls


def test_options_arguments_defaults_and_the_context():
    calls = _run(["--debug", "run", "--ip", "10.0.0.1", "n1"])
    assert calls == [("run", dict(fmt="table", ip="10.0.0.1", count=1, node="n1",
                                  root=(None, True), path="tool run"))]


def test_value_forms_and_last_one_wins():
    calls = _run(["run", "n1", "-ojson", "--ip=1.2.3.4", "--count", "2", "--count", "3"])
    assert calls[0][1] | {"root": None, "path": None} == dict(
        fmt="json", ip="1.2.3.4", count=3, node="n1", root=None, path=None)


def test_double_dash_ends_options():
    calls = _run(["run", "--ip", "x", "--", "--debug"])
    assert calls[0][1]["node"] == "--debug" and calls[0][1]["root"] == (None, False)


def test_envvar_is_used_only_when_the_option_is_absent(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOL_CONFIG", str(tmp_path / "env.json"))
    assert _run(["run", "--ip", "x", "n"])[0][1]["root"][0] == str(tmp_path / "env.json")
    given = _run(["--config", "/c.json", "run", "--ip", "x", "n"])
    assert given[0][1]["root"][0] == "/c.json"


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "n1"], "missing option '--ip'"),
    (["run", "--ip", "x"], "missing argument 'NODE'"),
    (["run", "--ip", "x", "a", "b"], "unexpected extra argument (b)"),
    (["run", "--ip", "x", "-o", "xml", "n"], "'xml' is not one of 'table', 'json'"),
    (["run", "--ip", "x", "--count", "9", "n"], "9 is not in the range 1 to 5"),
    (["run", "--ip", "x", "--count", "two", "n"], "'two' is not a whole number"),
    (["run", "--ip"], "option --ip requires a value"),
    (["run", "--nope", "n"], "no such option: --nope"),
    (["--debug=yes", "run"], "option --debug does not take a value"),
    (["frobnicate"], "no such command 'frobnicate'"),
])
def test_mistakes_are_usage_errors_naming_the_command(argv, message):
    with pytest.raises(cmdline.UsageError) as caught:
        _run(argv)
    assert message in caught.value.message
    assert caught.value.exit_code == 2
    assert caught.value.ctx.command_path == ("tool run" if argv[0] == "run" else "tool")


def test_path_checks(tmp_path):
    with pytest.raises(cmdline.UsageError, match="is a directory"):
        _run(["--config", str(tmp_path), "run", "--ip", "x", "n"])
    with pytest.raises(ValueError, match="does not exist"):
        cmdline.Path(exists=True).convert(str(tmp_path / "missing"))


def test_passthrough_keeps_everything_after_its_own_options():
    calls = _run(["exec", "--id", "a1", "node", "list", "--debug", "-o", "json"])
    assert calls == [("exec", dict(lab_id="a1", args=("node", "list", "--debug", "-o", "json")))]
    assert _run(["exec", "--", "--id", "x"])[0][1] == dict(lab_id=None, args=("--id", "x"))
    assert _run(["exec", "--unknown", "x"])[0][1]["args"] == ("--unknown", "x")


def test_group_callback_runs_alone_or_before_its_subcommand():
    assert _run(["daemon", "--flag"]) == [("daemon", dict(flag=True, sub=None))]
    assert _run(["daemon", "install"]) == [("daemon", dict(flag=False, sub="install")),
                                           ("install", {})]


def test_a_group_without_a_command_shows_its_help():
    with pytest.raises(cmdline.ShowHelp) as caught:
        _run([])
    assert "Commands:" in caught.value.text and caught.value.exit_code == 2


def test_help_anywhere_among_the_options_prints_and_exits_0(capsys):
    with pytest.raises(cmdline.Exit) as caught:
        _run(["run", "-o", "xml", "--help"])  # --help wins over a bad value before it
    assert caught.value.exit_code == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: tool run [OPTIONS] NODE\n\n  Run something on NODE.\n")
    assert "-o, --output [table|json]" in out and "[default: table]" in out
    assert "--ip TEXT" in out and "[required]" in out
    assert "--secret-thing" not in out  # hidden
    assert all(len(line) <= cmdline.MAX_WIDTH for line in out.splitlines())


def test_root_help_lists_lazy_commands_without_importing_them(capsys):
    group = cmdline.Group("x", None, [], "X.", lazy={
        "far": ("no.such.module", "far", "Lives elsewhere.")})
    with pytest.raises(cmdline.Exit):
        group.main(["--help"], prog_name="x")
    assert "  far  Lives elsewhere." in capsys.readouterr().out


def test_wrapping_keeps_words_whole():
    lines = cmdline._wrap("word " * 40, 30, "  ")
    assert all(len(ln) <= 30 for ln in lines) and " ".join(lines).split() == ["word"] * 40


def test_confirm_reads_an_answer_and_defaults(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("maybe\nyes\n\n"))
    assert cmdline.confirm("Trust?") is True
    assert cmdline.confirm("Trust?", default=False) is False
    assert capsys.readouterr().err.count("Trust? [y/N]: ") == 3
    with pytest.raises(cmdline.Abort):
        cmdline.confirm("Trust?")
