"""The root `nimbus` group: lazy subcommands, global options, and the one error-to-exit mapping."""

from __future__ import annotations

import os
import sys

import click

from nimbus import __version__
from nimbus.cli.secrets import secret_options
from nimbus.errors import NimbusError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# One line per noun: (module, attribute, short help). A module is imported only when its noun
# is run or completed, so `nimbus --help` and `node list` load one command module at most.
COMMANDS = {
    "serve": ("nimbus.cli.serve", "serve", "Run the control plane (API on :8443, TLS)."),
    "bootstrap": ("nimbus.cli.bootstrap", "bootstrap", "Create the first admin and its API key."),
    "configure": ("nimbus.cli.configure", "configure", "Store the CLI connection config."),
    "version": ("nimbus.cli.version", "version", "Print the client (and server) version."),
    "agent": ("nimbus.cli.agent", "agent", "Run the node agent (join with a token first)."),
    "node": ("nimbus.cli.nodes", "node", "Nodes: add, token, list, describe, drain, delete."),
    "iam": ("nimbus.cli.iam", "iam", "Users, API keys, passwords and tokens."),
    "lab": ("nimbus.cli.lab", "lab", "A real multi-node mesh on this machine (root)."),
    "audit": ("nimbus.cli.audit", "audit", "Show security events from the audit log."),
    "swarm": ("nimbus.cli.swarm", "swarm", "Docker Swarm groups of nodes, on the overlay."),
    "service": ("nimbus.cli.service", "service", "Compose stacks deployed onto a swarm."),
    "volume": ("nimbus.cli.volume", "volume", "NFS volumes served by a node to a swarm."),
    "s3": ("nimbus.cli.s3", "s3", "S3 storage: SeaweedFS across nodes, on the overlay."),
    "backup": ("nimbus.cli.backup", "backup", "Snapshot the control plane's data into a file."),
    "restore": ("nimbus.cli.backup", "restore", "Restore a backup into a new data dir."),
    "doctor": ("nimbus.cli.doctor", "doctor", "Check a data dir as `serve` does at start-up."),
    "completion": ("nimbus.cli.completion", "completion",
                   "Print the shell completion script (bash, zsh, fish)."),
}
# The root's client options each noun leaves unused: given on the command line to that noun,
# they are refused rather than silently ignored (`nimbus --config F serve`).
_CLIENT = ("config_path", "token", "token_file")
UNUSED_ROOT_OPTIONS = {**dict.fromkeys(("serve", "agent", "bootstrap", "backup", "restore",
                                        "doctor", "completion"), _CLIENT),
                       "configure": ("token", "token_file"), "version": ("token", "token_file"),
                       "lab": ("config_path",)}


class NoArgsIsHelp(click.UsageError):
    """A group run without a subcommand: its help is the answer, on stderr, exit code 2."""

    def __init__(self, ctx: click.Context) -> None:
        super().__init__(ctx.get_help(), ctx)


class LazyGroup(click.Group):
    """The root group: subcommands from `COMMANDS`, imported on `get_command`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        import importlib

        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The table from COMMANDS' short helps, without importing a single command module."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in sorted(COMMANDS)])

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            raise NoArgsIsHelp(ctx)
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: click.Context, args: list[str],
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        # `nimbus node` alone: the noun's help, as `nimbus` alone gives the root's (a plain
        # click 8.1 group would print it on stdout and exit 0, as if something had run).
        if (isinstance(cmd, click.Group) and not rest and not cmd.invoke_without_command
                and not ctx.resilient_parsing):
            raise NoArgsIsHelp(click.Context(cmd, info_name=name, parent=ctx))
        if name in UNUSED_ROOT_OPTIONS and not ctx.resilient_parsing:
            _refuse_unused(ctx, name, UNUSED_ROOT_OPTIONS[name])
        return name, cmd, rest

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """As a standalone program (`CliRunner().invoke(cli, …)` too) it is `run`: one-line
        errors and Nimbus's exit codes instead of click's own error screen."""
        if not standalone_mode:
            return super().main(args, prog_name or "nimbus", complete_var, False, **extra)
        sys.exit(run(list(sys.argv[1:] if args is None else args), extra.get("obj")))


def _refuse_unused(ctx: click.Context, name: str, unused: tuple[str, ...]) -> None:
    from click.core import ParameterSource

    for param in unused:
        if ctx.get_parameter_source(param) is ParameterSource.COMMANDLINE:
            from nimbus.cli.options import flag_of

            flag = flag_of(ctx, param)
            hint = (f"; its own is `nimbus {name} --config FILE`"
                    if param == "config_path" and name in ("serve", "agent") else "")
            raise click.UsageError(f"`nimbus {name}` does not use the CLI's {flag} (it is for "
                                   f"the commands that call the API){hint}", ctx)


@click.group("nimbus", cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              envvar="NIMBUS_CLI_CONFIG", help="CLI config file (default ~/.nimbus/config.json).")
@secret_options("token", "JWT to use instead of HMAC signing", envvar="NIMBUS_TOKEN",
                prompt=False)
@click.option("--debug", is_flag=True, help="Debug logs and full tracebacks.")
@click.version_option(__version__, "--version", message="nimbus %(version)s",
                      help="Print the client version and exit (`nimbus version` says more).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, token: str | None,
        token_file: str | None, debug: bool) -> None:
    """Nimbus: a self-hosted cloud for bare metal, in one file.

    Shell completion: `nimbus completion --help`.
    """
    ctx.ensure_object(dict).update(config_path=config_path, token=token, token_file=token_file,
                                   debug=debug, command=ctx.invoked_subcommand)
    if debug:
        from nimbus import logs

        logs.setup("debug")


# click >= 8.2 signals "no arguments: show the help" with a UsageError subclass of its own.
_NO_ARGS_IS_HELP = (NoArgsIsHelp, getattr(click.exceptions, "NoArgsIsHelpError", NoArgsIsHelp))


def run(argv: list[str], obj: dict[str, Any] | None = None) -> int:
    """Run the CLI; every failure becomes one line on stderr and a non-zero exit code.

    `--debug` counts only as the root option (`nimbus --debug …`): the root callback records
    it in `obj`, so `nimbus lab cli -- node list --debug` does not turn tracebacks on here.
    `obj` (the root's settings, and `command`: the subcommand run) is the caller's to read.
    """
    obj = {} if obj is None else obj
    try:
        # Under standalone_mode=False click returns the code of an `Exit` (ctx.exit(n),
        # --help, --version) instead of raising it; commands themselves return None.
        code = cli.main(argv, "nimbus", standalone_mode=False, obj=obj)
        return code if isinstance(code, int) and not isinstance(code, bool) else 0
    except _NO_ARGS_IS_HELP as exc:  # `nimbus` or `nimbus node` alone: the help text
        click.echo(exc.format_message(), err=True)
        return 2
    except click.UsageError as exc:
        click.echo(f"error: {usage_message(exc)}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"error: {_sentence(exc.format_message())}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except NimbusError as exc:
        if obj.get("debug"):
            raise
        from nimbus.cli.output import safe

        click.echo(f"error: {safe(exc.message)}", err=True)  # the message may be the server's
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # click's shell completion and its broken-pipe exit
        return exc.code if isinstance(exc.code, int) else 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if obj.get("debug"):
            raise
        click.echo(f"error: unexpected {type(exc).__name__}: {_first_line(exc)} "
                   "(run with --debug for details)", err=True)
        return 1


def usage_message(exc: click.UsageError) -> str:
    """click's message as one line, with the closest command name and the help to read."""
    text = _sentence(exc.format_message()).replace(" Did you mean", "; did you mean")
    ctx = exc.ctx
    if ctx is None:
        return text
    if isinstance(ctx.command, click.Group) and text.startswith("no such command"):
        import difflib

        wrong = text.split("'")[1] if text.count("'") >= 2 else ""
        close = difflib.get_close_matches(wrong, ctx.command.list_commands(ctx), n=1)
        if close:
            text += f"; did you mean {close[0]!r}?"
    return f"{text} (see `{ctx.command_path} --help`)"


def _sentence(text: str) -> str:
    """One line, starting lower case and without the final period (`error: …` leads it)."""
    line = " ".join(text.split())
    if line[:1].isupper() and line[1:2].islower():
        line = line[0].lower() + line[1:]
    return line[:-1] if line.endswith(".") else line


def _first_line(exc: Any) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no details"
