"""`nimbus bootstrap`, `nimbus configure` and `nimbus version`."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import click

from nimbus import __version__
from nimbus.cli.context import CONFIG_FIELDS, config_path
from nimbus.cli.output import emit, output_option
from nimbus.errors import BadRequest, ConfigError, NimbusError
from nimbus.store.files import ensure_private_dir, write_private


@click.command()
@click.option("--data-dir", default=None, envvar="NIMBUS_DATA_DIR",
              help="Control-plane data dir (local bootstrap).")
@click.option("--server-config", type=click.Path(dir_okay=False), default=None,
              help="Server config to read the API address from (local bootstrap).")
@click.option("--output", "output_file", type=click.Path(dir_okay=False), default=None,
              help="Also write the connection config to FILE (0600).")
@click.option("--api-url", default=None, help="Bootstrap a remote control plane at URL.")
@click.option("--bootstrap-secret", default=None, envvar="NIMBUS_BOOTSTRAP_SECRET",
              help="One-time secret from the control-plane host (prefer the env var or file).")
@click.option("--bootstrap-secret-file", type=click.File("r"), default=None,
              help="Read the one-time secret from FILE or - (stdin).")
def bootstrap(data_dir: str | None, server_config: str | None, output_file: str | None,
              api_url: str | None, bootstrap_secret: str | None,
              bootstrap_secret_file: Any) -> None:
    """Create the admin user and its first API key; prints the connection config once."""
    if api_url:
        secret = bootstrap_secret or (bootstrap_secret_file.read().strip()
                                      if bootstrap_secret_file else None)
        if not secret:
            secret = click.prompt("bootstrap secret", hide_input=True)
        result, ca_pem = _remote_bootstrap(api_url, secret)
    else:
        result, ca_pem, api_url = _local_bootstrap(data_dir, server_config)
    connection = {"api_url": api_url, "access_key": result["access_key"],
                  "secret_key": result["secret_key"], "tls_ca": ca_pem}
    if output_file:
        write_private(Path(output_file), json.dumps(connection, indent=2) + "\n")
        click.echo(f"admin user: {result['user']['id']}")
        click.echo(f"access key: {result['access_key']}")
        click.echo(f"secret key: {result['secret_key']}")  # SECURITY: shown once, by design
        click.echo(f"connection config written to {output_file} (0600); next: "
                   f"nimbus configure --from {output_file}")
    else:
        click.echo(json.dumps(connection, indent=2))  # SECURITY: the one-time credentials


def _local_bootstrap(data_dir: str | None, server_config: str | None) -> tuple[dict, str, str]:
    from nimbus import config as cfg
    from nimbus.server import iam
    from nimbus.server.state import open_state

    config = cfg.load(cfg.ServerConfig, Path(server_config) if server_config else None,
                      cfg.SERVER_CONFIG_PATH, {"data_dir": data_dir})
    state = open_state(config)
    result = iam.bootstrap(state, via="local")
    api_url = config.direct_api_url
    endpoint = config.data_path / "endpoint.json"
    if endpoint.exists():
        api_url = json.loads(endpoint.read_text()).get("api_url", api_url)
    return result, state.keys.ca_pem, api_url


def _remote_bootstrap(api_url: str, secret: str) -> tuple[dict, str]:
    """Prove the secret bound to the CA we see, so a TLS man-in-the-middle gains nothing."""
    import ssl

    from nimbus.client import ApiClient
    from nimbus.security.pki import ca_fingerprint
    from nimbus.server.iam import bootstrap_proof

    insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    ca_pem = ApiClient(api_url, None, context=insecure).text("/v1/ca")
    try:
        fingerprint = ca_fingerprint(ca_pem)
    except ValueError:
        raise NimbusError(f"{api_url} did not return a CA certificate") from None
    nonce = secrets.token_hex(16)
    client = ApiClient(api_url, ca_pem)
    body = {"ca_fingerprint": fingerprint, "nonce": nonce,
            "proof": bootstrap_proof(secret, fingerprint, nonce)}
    return client.request("POST", "/v1/bootstrap", body), ca_pem


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


@click.command()
@output_option
@click.pass_context
def version(ctx: click.Context, fmt: str) -> None:
    """Print the client version, and the server's when a config exists."""
    from nimbus.cli.context import api

    info: dict[str, Any] = {"client": __version__}
    root = ctx.find_root().obj or {}
    if os.path.exists(config_path(root.get("config_path"))):
        try:
            info["server"] = api(ctx, auth=False).request("GET", "/v1/version")["version"]
        except NimbusError as exc:
            info["server_error"] = exc.message
    emit(info, fmt)
