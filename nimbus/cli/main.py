"""The root `nimbus` group: lazy subcommands, global options, and the one error-to-exit mapping."""

from __future__ import annotations

import os
import sys

from nimbus.cli import cmdline
from nimbus.cli.secrets import secret_options
from nimbus.errors import NimbusError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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
    "volume": ("nimbus.cli.volume", "volume", "NFS volumes served by a node to a swarm."),
    "backup": ("nimbus.cli.backup", "backup", "Snapshot the control plane's data into a file."),
    "restore": ("nimbus.cli.backup", "restore", "Restore a backup into a new data dir."),
    "doctor": ("nimbus.cli.doctor", "doctor", "Check a data dir as `serve` does at start-up."),
}


@cmdline.group("nimbus", lazy=COMMANDS)
@cmdline.option("--config", "config_path", type=cmdline.Path(dir_okay=False),
                envvar="NIMBUS_CLI_CONFIG", help="CLI config file (default ~/.nimbus/config.json).")
@secret_options("token", "JWT to use instead of HMAC signing", envvar="NIMBUS_TOKEN")
@cmdline.option("--debug", is_flag=True, help="Debug logs and full tracebacks.")
@cmdline.pass_context
def cli(ctx: cmdline.Context, config_path: str | None, token: str | None,
        token_file: str | None, debug: bool) -> None:
    """Nimbus: a self-hosted cloud for bare metal, in one file."""
    ctx.obj.update(config_path=config_path, token=token, token_file=token_file, debug=debug,
                   command=ctx.invoked_subcommand)
    if debug:
        from nimbus import logs

        logs.setup("debug")


def run(argv: list[str], obj: dict[str, Any] | None = None) -> int:
    """Run the CLI; every failure becomes one line on stderr and a non-zero exit code.

    `--debug` counts only as the root option (`nimbus --debug …`): the root callback records
    it in `obj`, so `nimbus lab cli -- node list --debug` does not turn tracebacks on here.
    `obj` (the root's settings, and `command`: the subcommand run) is the caller's to read.
    """
    obj = {} if obj is None else obj
    try:
        cli.main(argv, prog_name="nimbus", obj=obj)
        return 0
    except cmdline.Exit as exc:
        return exc.exit_code
    except cmdline.ShowHelp as exc:  # `nimbus` or `nimbus node` alone: the help text
        cmdline.echo(exc.text, err=True)
        return exc.exit_code
    except cmdline.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        cmdline.echo(f"error: {exc.message}{hint}", err=True)
        return exc.exit_code
    except cmdline.Abort:
        cmdline.echo("aborted", err=True)
        return 130
    except NimbusError as exc:
        if obj.get("debug"):
            raise
        from nimbus.cli.output import safe

        cmdline.echo(f"error: {safe(exc.message)}", err=True)  # the message may be the server's
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if obj.get("debug"):
            raise
        cmdline.echo(f"error: unexpected {type(exc).__name__}: {_first_line(exc)} "
                     "(run with --debug for details)", err=True)
        return 1


def _first_line(exc: Any) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no details"
