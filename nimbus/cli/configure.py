"""`nimbus configure`: store the CLI connection config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from nimbus.cli.context import CONFIG_FIELDS, config_path
from nimbus.errors import BadRequest, ConfigError
from nimbus.store.files import ensure_private_dir, write_private


@click.command()
@click.option("--from", "from_file", type=click.File("r"), default=None,
              help="A connection config written by `nimbus bootstrap`.")
@click.option("--api-url", default=None, help="API URL (overrides the file's).")
@click.option("--access-key", default=None)
@click.option("--secret-key", default=None, envvar="NIMBUS_SECRET_KEY",
              help="Secret key (prefer --from or the NIMBUS_SECRET_KEY env var).")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CA certificate file of the control plane.")
@click.pass_context
def configure(ctx: click.Context, from_file: Any, api_url: str | None, access_key: str | None,
              secret_key: str | None, tls_ca: str | None) -> None:
    """Store the CLI connection config (~/.nimbus/config.json, 0600)."""
    data: dict[str, Any] = {}
    if from_file is not None:
        try:
            data = json.load(from_file)
        except ValueError:
            raise BadRequest(f"{from_file.name} is not a JSON connection config") from None
        if not isinstance(data, dict) or set(data) - set(CONFIG_FIELDS):
            raise BadRequest(f"{from_file.name} is not a Nimbus connection config")
    for key, value in (("api_url", api_url), ("access_key", access_key),
                       ("secret_key", secret_key)):
        if value:
            data[key] = value
    if tls_ca:
        data["tls_ca"] = Path(tls_ca).read_text()
    missing = [k for k in ("api_url", "access_key", "secret_key") if not data.get(k)]
    if missing:
        raise ConfigError("missing " + ", ".join(missing) + " (use --from FILE or the flags)")
    if not str(data["api_url"]).startswith("https://"):
        raise BadRequest("api_url must start with https://")
    path = config_path((ctx.find_root().obj or {}).get("config_path"))
    ensure_private_dir(path.parent)
    write_private(path, json.dumps({k: data.get(k) for k in CONFIG_FIELDS}, indent=2) + "\n")
    click.echo(f"saved CLI config to {path}")
