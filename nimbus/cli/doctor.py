"""`nimbus doctor`: the server's start-up checks of a data dir, on demand, every finding."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def data_dir_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--data-dir, or the data_dir of the server config (default /etc/nimbus/api.toml)."""
    fn = click.option("--server-config", type=click.Path(dir_okay=False), default=None,
                      help="Server config to read data_dir from.")(fn)
    return click.option("--data-dir", default=None, envvar="NIMBUS_DATA_DIR",
                        type=click.Path(file_okay=False),
                        help="Control-plane data dir.")(fn)


def resolve_data_dir(data_dir: str | None, server_config: str | None) -> Path:
    from nimbus import config as cfg

    config = cfg.load(cfg.ServerConfig, Path(server_config) if server_config else None,
                      cfg.SERVER_CONFIG_PATH, {"data_dir": data_dir})
    return config.data_path


@click.command()
@data_dir_option
def doctor(data_dir: str | None, server_config: str | None) -> None:
    """Check every collection, key file and the CA pair; exit non-zero on any problem."""
    from nimbus.errors import ConfigError
    from nimbus.server import verify

    path = resolve_data_dir(data_dir, server_config)
    if not path.is_dir():
        raise ConfigError(f"{path} does not exist")
    if not verify.initialized(path):
        problems = verify.findings(path)
        if not problems:
            click.echo(f"{path} holds no control plane yet (`nimbus serve` creates one)")
            return
    else:
        problems = verify.findings(path)
    full = verify.free_space_problem(path)
    problems += [full] if full else []
    for problem in problems:
        click.echo(f"problem: {problem}")
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) in {path}")
    click.echo(f"{path}: CA pair, keys and every store collection are intact")
