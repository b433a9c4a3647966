"""`nimbus bootstrap`: the first admin and its API key, locally or remotely."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

import click

from nimbus.cli.secrets import read_secret, secret_options
from nimbus.errors import NimbusError
from nimbus.store.files import write_private


@click.command()
@click.option("--data-dir", default=None, envvar="NIMBUS_DATA_DIR",
              type=click.Path(file_okay=False),
              help="Control-plane data dir (local bootstrap).")
@click.option("--server-config", type=click.Path(dir_okay=False), default=None,
              help="Server config to read the API address from (local bootstrap).")
@click.option("--output", "output_file", type=click.Path(dir_okay=False), default=None,
              help="Also write the connection config to FILE (0600).")
@click.option("--api-url", default=None, help="Bootstrap a remote control plane at URL.")
@secret_options("bootstrap-secret", "one-time secret from the control-plane host",
                envvar="NIMBUS_BOOTSTRAP_SECRET")
def bootstrap(data_dir: str | None, server_config: str | None, output_file: str | None,
              api_url: str | None, bootstrap_secret: str | None,
              bootstrap_secret_file: str | None) -> None:
    """Create the admin user and its first API key; prints the connection config once."""
    if api_url:
        secret = read_secret("bootstrap secret", flag="--bootstrap-secret",
                             value=bootstrap_secret, file=bootstrap_secret_file,
                             envvar="NIMBUS_BOOTSTRAP_SECRET").strip()
        result, ca_pem = _remote_bootstrap(api_url, secret)
        confirm = _remote_confirm
    else:
        result, ca_pem, api_url, confirm = _local_bootstrap(data_dir, server_config)
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
    # Only now does the operator have the credential; until here a re-run redoes bootstrap.
    confirm(connection, result["user"]["id"])


def _local_bootstrap(data_dir: str | None, server_config: str | None,
                     ) -> tuple[dict, str, str, Callable[[dict, str], None]]:
    from nimbus import config as cfg
    from nimbus.server import iam
    from nimbus.server.boot import open_state

    config = cfg.load(cfg.ServerConfig, Path(server_config) if server_config else None,
                      cfg.SERVER_CONFIG_PATH, {"data_dir": data_dir})
    if not config.data_dir:  # neither --data-dir, NIMBUS_DATA_DIR nor the config file named one
        _refuse_a_second_control_plane(config.data_path)
    state = open_state(config)
    result = iam.bootstrap(state, via="local")
    api_url = config.direct_api_url
    endpoint = config.data_path / "endpoint.json"
    if endpoint.exists():
        api_url = json.loads(endpoint.read_text()).get("api_url", api_url)
    return (result, state.keys.ca_pem, api_url,
            lambda _connection, user_id: iam.confirm_bootstrap(state, user_id))


def _refuse_a_second_control_plane(data_path: Path) -> None:
    """The default data dir without a CA would become a new control plane: refuse that while
    a server on this host runs with another data dir (its credentials would not work there)."""
    from nimbus.errors import Conflict
    from nimbus.server import instances

    if (data_path / "ca.crt").exists():
        return
    others = instances.others(data_path) or []
    if others:
        rec = others[0]
        raise Conflict(f"the control plane running on this host (pid {rec.get('pid')}) uses "
                       f"data dir {rec.get('data_dir')}, not {data_path}; run `nimbus "
                       f"bootstrap --data-dir {rec.get('data_dir')}`")


def _remote_confirm(connection: dict, user_id: str) -> None:
    """The server confirms a remote bootstrap on the new key's first signed request."""
    from nimbus.client import ApiClient, HmacAuth

    client = ApiClient(connection["api_url"], connection["tls_ca"],
                       auth=HmacAuth(connection["access_key"], connection["secret_key"]))
    try:
        client.request("GET", f"/v1/iam/users/{user_id}")
    finally:
        client.close()


def _remote_bootstrap(api_url: str, secret: str) -> tuple[dict, str]:
    """Prove the secret bound to the CA we see, so a TLS man-in-the-middle gains nothing."""
    import ssl

    from nimbus.client import ApiClient
    from nimbus.security.bootstrap import bootstrap_proof
    from nimbus.security.pki import ca_fingerprint

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
