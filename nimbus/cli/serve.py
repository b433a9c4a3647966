"""`nimbus serve` and `nimbus serve install`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from nimbus import config as cfg
from nimbus.cli.context import root_option


def server_options(fn: Any) -> Any:
    """The options `serve` and `serve install` share: a unit runs what `serve` would."""
    for decorate in reversed((
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="Server config (default /etc/nimbus/api.toml)."),
        click.option("--listen", default=None, help="HOST:PORT to listen on (default "
                                                     "0.0.0.0:8443)."),
        click.option("--data-dir", default=None, envvar="NIMBUS_DATA_DIR",
                     type=click.Path(file_okay=False),
                     help="State directory."),
        click.option("--no-wireguard", is_flag=True, help="Development mode: no tunnel, same "
                                                          "mTLS."))):
        fn = decorate(fn)
    return fn


@click.group(invoke_without_command=True)
@server_options
@click.pass_context
def serve(ctx: click.Context, config_file: str | None, listen: str | None, data_dir: str | None,
          no_wireguard: bool) -> None:
    """Run the control plane (API on :8443, TLS only).

    `nimbus serve install` writes a systemd unit that runs the same command.
    """
    if ctx.invoked_subcommand is not None:
        return
    from nimbus import logs
    from nimbus.server.main import serve as run_server

    config = load_config(config_file, listen, data_dir, no_wireguard)
    logs.setup("debug" if root_option(ctx, "debug") else config.log_level)
    run_server(config)


def load_config(config_file: str | None, listen: str | None, data_dir: str | None,
                no_wireguard: bool) -> cfg.ServerConfig:
    overrides = {"listen": listen, "data_dir": data_dir,
                 "wireguard": False if no_wireguard else None}
    return cfg.load(cfg.ServerConfig, Path(config_file) if config_file else None,
                    cfg.SERVER_CONFIG_PATH, overrides)


@serve.command("install")
@server_options
@click.option("--now", "start", is_flag=True, help="Also start the service now.")
@click.option("--dry-run", is_flag=True, help="Print the unit instead of installing it.")
@click.pass_context
def install(ctx: click.Context, config_file: str | None, listen: str | None,
            data_dir: str | None, no_wireguard: bool, start: bool, dry_run: bool) -> None:
    """Write and enable a hardened systemd unit (nimbus.service); --now also starts it.

    The options are those of `nimbus serve`, given before or after `install`.
    """
    from nimbus.cli.options import inherited
    from nimbus.cli.systemd import STATE_DIR, UnitSpec, install_unit

    given = inherited(ctx, config_file=config_file, listen=listen, data_dir=data_dir,
                      no_wireguard=no_wireguard)
    config_file, listen = given["config_file"], given["listen"]
    data_dir, no_wireguard = given["data_dir"], given["no_wireguard"]
    config = load_config(config_file, listen, data_dir, no_wireguard)  # validates it now
    args = ["serve"]
    if config_file:
        args += ["--config", str(Path(config_file).resolve())]
    if listen:
        args += ["--listen", listen]
    if data_dir:
        args += ["--data-dir", str(Path(data_dir).resolve())]
    if no_wireguard:
        args.append("--no-wireguard")
    # The unit runs as root: its data dir is the configured one, else root's default.
    unit_data = str(Path(data_dir or config.data_dir or STATE_DIR).resolve())
    low = cfg.parse_listen(config.listen)[1] < 1024 or (
        config.wireguard and config.wireguard_port < 1024)
    spec = UnitSpec("nimbus.service", "Nimbus control plane", args, unit_data,
                    wireguard=config.wireguard, low_port=low)
    install_unit(spec, dry_run, start)
