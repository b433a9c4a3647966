"""`nimbus agent` (join once, then run the node agent) and `nimbus agent install`."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from nimbus import config as cfg
from nimbus.errors import Unauthorized


def agent_options(fn: Any) -> Any:
    """The options `agent` and `agent install` share: a unit runs what `agent` would."""
    for decorate in reversed((
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="Agent settings (default /etc/nimbus/agent.toml when it exists)."),
        click.option("--data-dir", default=None, envvar="NIMBUS_DATA_DIR",
                     type=click.Path(file_okay=False),
                     help="Credentials and state (default /var/lib/nimbus as root, else "
                          "~/.nimbus)."),
        click.option("--no-wireguard", is_flag=True,
                     help="Development mode: no tunnel, same mTLS."))):
        fn = decorate(fn)
    return fn


JOIN_OPTIONS = ("join", "token", "token_file", "api_url")


@click.group(invoke_without_command=True)
@click.option("--join", is_flag=True, help="Enroll this node with a one-time join token.")
@click.option("--token", default=None,
              help="The join token (visible in the process list; prefer --token-file).")
@click.option("--token-file", default=None, type=click.Path(dir_okay=False, allow_dash=True),
              help="Read the join token from FILE, or - for stdin.")
@click.option("--api-url", default=None,
              help="Call the API here instead of the token's URL (--join only).")
@agent_options
@click.pass_context
def agent(ctx: click.Context, join: bool, token: str | None, token_file: str | None,
          api_url: str | None, config_file: str | None, data_dir: str | None,
          no_wireguard: bool) -> None:
    """Run the node agent: heartbeats, tasks and certificate renewal over mTLS.

    Join once with `--join --token-file FILE`; later runs (and `nimbus agent install`'s
    unit) resume with the saved identity.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not join and (token or token_file or api_url):
        raise click.UsageError("--token, --token-file and --api-url only make sense with "
                               "--join", ctx)
    from nimbus import logs

    settings, explicit = load_settings(config_file, data_dir, no_wireguard)
    logs.setup("debug" if ctx.find_root().params.get("debug") else settings.log_level)
    run_agent(settings, explicit, join, token, token_file, api_url)


def load_settings(config_file: str | None, data_dir: str | None,
                  no_wireguard: bool) -> tuple[cfg.AgentConfig, dict[str, Any]]:
    """The operator's settings, and the keys set explicitly (they win over saved ones)."""
    from nimbus.compat import tomllib

    overrides = {"data_dir": data_dir, "wireguard": False if no_wireguard else None}
    path = Path(config_file) if config_file else None
    settings = cfg.load(cfg.AgentConfig, path, cfg.AGENT_CONFIG_PATH, overrides)
    source = path or (cfg.AGENT_CONFIG_PATH if cfg.AGENT_CONFIG_PATH.exists() else None)
    explicit = tomllib.loads(source.read_text()) if source else {}
    explicit.update({k: v for k, v in overrides.items() if v is not None})
    return settings, explicit


def run_agent(settings: cfg.AgentConfig, explicit: dict[str, Any], join: bool,
              token: str | None, token_file: str | None, api_url: str | None) -> None:
    from nimbus.agent import enroll
    from nimbus.agent.daemon import Agent
    from nimbus.agent.files import AgentFiles

    files = AgentFiles(settings.data_path)
    lock = files.lock()  # one agent per data dir; held until this process exits

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # during join: unwinds and removes a half-made interface

    signal.signal(signal.SIGTERM, interrupt)
    if join:
        text = enroll.read_token(token, token_file, sys.stdin)
        if token:
            click.echo("warning: --token is visible to other users in the process list; "
                       "use --token-file next time", err=True)
        try:
            config, wireguard = enroll.join(text, settings, api_url, files)
        except Unauthorized as exc:  # the join was refused: spent, expired or wrong token
            from nimbus import wire

            node = wire.decode_join_token(text)["node_id"]
            raise Unauthorized(f"{exc.message}; ask for a new one with `nimbus node token "
                               f"{node}`") from None
    else:
        config, wireguard = enroll.resume(files, explicit)
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    Agent(config, files, wireguard, stop).run()
    lock.close()


@agent.command("install")
@click.option("--dry-run", is_flag=True, help="Print the unit instead of installing it.")
@agent_options
@click.option("--now", "start", is_flag=True, help="Also start the service now.")
@click.pass_context
def install(ctx: click.Context, dry_run: bool, config_file: str | None, data_dir: str | None,
            no_wireguard: bool, start: bool) -> None:
    """Write and enable a hardened systemd unit (nimbus-agent.service); --now also starts it.

    The options are those of `nimbus agent`, given before or after `install`; join first.
    """
    from nimbus.agent.files import AgentFiles
    from nimbus.cli.options import inherited, refuse_group_options
    from nimbus.cli.systemd import STATE_DIR, UnitSpec, install_unit

    # SECURITY: a join token must never end up in a unit file.
    refuse_group_options(ctx, JOIN_OPTIONS, "join first (nimbus agent --join …), then run "
                                            "`nimbus agent install`")
    given = inherited(ctx, config_file=config_file, data_dir=data_dir, no_wireguard=no_wireguard)
    config_file, data_dir = given["config_file"], given["data_dir"]
    no_wireguard = given["no_wireguard"]
    settings, explicit = load_settings(config_file, data_dir, no_wireguard)
    unit_data = str(Path(data_dir or settings.data_dir or STATE_DIR).resolve())
    # As `agent` itself does: what the join saved in the data dir, explicit settings over it.
    saved = AgentFiles(Path(unit_data)).config
    if saved.exists():
        settings = cfg.load(cfg.AgentConfig, saved, saved, explicit)
    args = ["agent"]
    if config_file:
        args += ["--config", str(Path(config_file).resolve())]
    if data_dir:
        args += ["--data-dir", str(Path(data_dir).resolve())]
    if no_wireguard:
        args.append("--no-wireguard")
    spec = UnitSpec("nimbus-agent.service", "Nimbus node agent", args, unit_data,
                    wireguard=settings.wireguard,
                    low_port=settings.wireguard and settings.wireguard_port < 1024)
    holder = AgentFiles(Path(unit_data)).lock_holder()
    if holder and not dry_run:
        click.echo(f"note: an agent already runs on {unit_data} (pid {holder}); the service "
                   "waits for it: stop it (Ctrl-C) and the service takes over", err=True)
    install_unit(spec, dry_run, start)
