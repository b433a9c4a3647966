"""The root `nimbus` group: lazy subcommands, global options, and the one error-to-exit mapping."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from nimbus.cli.secrets import secret_options
from nimbus.errors import NimbusError

# Subcommands are imported only when used, so `nimbus --help` and `node list` start fast.
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
    "backup": ("nimbus.cli.backup", "backup", "Snapshot the control plane's data into a file."),
    "restore": ("nimbus.cli.backup", "restore", "Restore a backup into a new data dir."),
    "doctor": ("nimbus.cli.doctor", "doctor", "Check a data dir as `serve` does at start-up."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              envvar="NIMBUS_CLI_CONFIG", help="CLI config file (default ~/.nimbus/config.json).")
@secret_options("token", "JWT to use instead of HMAC signing", envvar="NIMBUS_TOKEN")
@click.option("--debug", is_flag=True, help="Debug logs and full tracebacks.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, token: str | None, token_file: str | None,
        debug: bool) -> None:
    """Nimbus: a self-hosted cloud for bare metal, in one file."""
    ctx.ensure_object(dict).update(config_path=config_path, token=token,
                                   token_file=token_file, debug=debug)
    if debug:
        from nimbus import logs

        logs.setup("debug")


# click >= 8.2 signals "no arguments: show the help" with a UsageError subclass.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def run(argv: list[str]) -> int:
    """Run the CLI; every failure becomes one line on stderr and a non-zero exit code.

    `--debug` counts only as the root option (`nimbus --debug …`): the root callback records
    it in `obj`, so `nimbus lab cli -- node list --debug` does not turn tracebacks on here.
    """
    obj: dict[str, Any] = {}
    try:
        # Under standalone_mode=False click returns the code of an `Exit` (ctx.exit(n),
        # raise Exit(n)) instead of raising it; commands themselves return None.
        code = cli.main(args=argv, prog_name="nimbus", standalone_mode=False, obj=obj)
        return code if isinstance(code, int) and not isinstance(code, bool) else 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except _NO_ARGS_IS_HELP as exc:  # `nimbus` or `nimbus node` alone: the help text
        exc.show()
        return exc.exit_code
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
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
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if obj.get("debug"):
            raise
        click.echo(f"error: unexpected {type(exc).__name__}: {_first_line(exc)} "
                   "(run with --debug for details)", err=True)
        return 1


def _first_line(exc: Any) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no details"
