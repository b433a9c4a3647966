"""`nimbus serve` and `nimbus serve install`."""

from __future__ import annotations

from pathlib import Path

import click

from nimbus import config as cfg


@click.group(invoke_without_command=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Server config (default /etc/nimbus/api.toml).")
@click.option("--listen", default=None, help="HOST:PORT to listen on (default 0.0.0.0:8443).")
@click.option("--data-dir", default=None, envvar="NIMBUS_DATA_DIR", help="State directory.")
@click.option("--no-wireguard", is_flag=True, help="Development mode: no tunnel, same mTLS.")
@click.pass_context
def serve(ctx: click.Context, config_file: str | None, listen: str | None, data_dir: str | None,
          no_wireguard: bool) -> None:
    """Run the control plane (API on :8443, TLS only)."""
    ctx.ensure_object(dict)
    ctx.obj["serve_args"] = (config_file, listen, data_dir, no_wireguard)
    if ctx.invoked_subcommand is not None:
        return
    from nimbus import logs
    from nimbus.server.main import serve as run_server

    config = load_config(config_file, listen, data_dir, no_wireguard)
    debug = (ctx.find_root().obj or {}).get("debug")
    logs.setup("debug" if debug else config.log_level)
    run_server(config)


def load_config(config_file: str | None, listen: str | None, data_dir: str | None,
                no_wireguard: bool) -> cfg.ServerConfig:
    overrides = {"listen": listen, "data_dir": data_dir,
                 "wireguard": False if no_wireguard else None}
    return cfg.load(cfg.ServerConfig, Path(config_file) if config_file else None,
                    cfg.SERVER_CONFIG_PATH, overrides)


@serve.command("install")
@click.option("--dry-run", is_flag=True, help="Print the unit instead of installing it.")
@click.pass_context
def install(ctx: click.Context, dry_run: bool) -> None:
    """Write and enable a hardened systemd unit (nimbus.service) for the control plane."""
    from nimbus.cli.systemd import install_unit

    config_file, listen, data_dir, no_wireguard = ctx.obj["serve_args"]
    args = ["serve"]
    if config_file:
        args += ["--config", str(Path(config_file).resolve())]
    if listen:
        args += ["--listen", listen]
    if data_dir:
        args += ["--data-dir", str(Path(data_dir).resolve())]
    if no_wireguard:
        args.append("--no-wireguard")
    install_unit("nimbus.service", "Nimbus control plane", args,
                 data_dir or "/var/lib/nimbus", dry_run)
