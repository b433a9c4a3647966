"""`nimbus serve` and `nimbus serve install`."""

from __future__ import annotations

from pathlib import Path

from nimbus import config as cfg
from nimbus.cli import cmdline


@cmdline.group(invoke_without_command=True)
@cmdline.option("--config", "config_file", type=cmdline.Path(dir_okay=False), default=None,
                help="Server config (default /etc/nimbus/api.toml).")
@cmdline.option("--listen", default=None, help="HOST:PORT to listen on (default 0.0.0.0:8443).")
@cmdline.option("--data-dir", default=None, envvar="NIMBUS_DATA_DIR", help="State directory.")
@cmdline.option("--no-wireguard", is_flag=True, help="Development mode: no tunnel, same mTLS.")
@cmdline.pass_context
def serve(ctx: cmdline.Context, config_file: str | None, listen: str | None, data_dir: str | None,
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
@cmdline.option("--config", "config_opt", type=cmdline.Path(dir_okay=False), default=None,
                help="Server config for the unit to use.")
@cmdline.option("--listen", "listen_opt", default=None, help="HOST:PORT for the unit to use.")
@cmdline.option("--data-dir", "data_dir_opt", default=None, help="Data dir for the unit to use.")
@cmdline.option("--no-wireguard", "no_wg_opt", is_flag=True, help="Run the unit without a tunnel.")
@cmdline.option("--now", "start", is_flag=True, help="Also start the service now.")
@cmdline.option("--dry-run", is_flag=True, help="Print the unit instead of installing it.")
@cmdline.pass_context
def install(ctx: cmdline.Context, config_opt: str | None, listen_opt: str | None,
            data_dir_opt: str | None, no_wg_opt: bool, start: bool, dry_run: bool) -> None:
    """Write and enable a hardened systemd unit (nimbus.service); --now also starts it."""
    from nimbus.cli.systemd import STATE_DIR, UnitSpec, install_unit

    config_file, listen, data_dir, no_wireguard = ctx.obj["serve_args"]
    config_file, listen = config_opt or config_file, listen_opt or listen
    data_dir, no_wireguard = data_dir_opt or data_dir, no_wireguard or no_wg_opt
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
