"""`nimbus configure`: check and store the CLI connection config.

An access key is optional: a user with only a password configures the URL and the CA, then
logs in with `nimbus iam login` and uses the printed NIMBUS_TOKEN. Before anything is saved
the URL is validated, the CA is settled (given, or fetched and confirmed by fingerprint) and
the API is called once with it, so a saved config is one that works.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from nimbus.cli import trust
from nimbus.cli.context import CONFIG_FIELDS, config_path, root_option
from nimbus.cli.secrets import read_secret, secret_options
from nimbus.errors import BadRequest, ConfigError, Forbidden


@click.command()
@click.option("--from", "from_file", metavar="FILE|-", default=None,
              type=click.Path(dir_okay=False, allow_dash=True),
              help="A connection config written by `nimbus bootstrap` or `iam create-key`.")
@click.option("--api-url", default=None, help="API URL, https://HOST[:PORT] (overrides --from).")
@click.option("--access-key", default=None, help="Access key (omit for password-only users).")
@secret_options("secret-key", "secret key", envvar="NIMBUS_SECRET_KEY")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CA certificate file of the control plane (skips the fingerprint check).")
@click.option("--ca-fingerprint", default=None, metavar="SHA256:…",
              help="Trust the CA fetched from the server only if it has this fingerprint.")
@click.option("--offline", is_flag=True,
              help="Do not call the server (then --tls-ca or --from with a CA is needed).")
@click.pass_context
def configure(ctx: click.Context, from_file: str | None, api_url: str | None,
              access_key: str | None,
              secret_key: str | None, secret_key_file: str | None, tls_ca: str | None,
              ca_fingerprint: str | None, offline: bool) -> None:
    """Check and store the CLI connection config (~/.nimbus/config.json, 0600)."""
    data = _from_file(from_file) if from_file is not None else {}
    if api_url:
        data["api_url"] = api_url
    if not data.get("api_url"):
        raise ConfigError("missing the API URL: give --api-url https://HOST:PORT or --from FILE")
    data["api_url"] = trust.check_api_url(str(data["api_url"]))
    if access_key:
        data["access_key"] = access_key
    if secret_key is not None or secret_key_file is not None or (
            data.get("access_key") and not data.get("secret_key")):
        data["secret_key"] = read_secret("secret key", flag="--secret-key", value=secret_key,
                                         file=secret_key_file, envvar="NIMBUS_SECRET_KEY")
    if bool(data.get("access_key")) != bool(data.get("secret_key")):
        raise ConfigError("an access key needs its secret key (or give neither and log in "
                          "with a password: nimbus iam login)")
    if tls_ca:
        data["tls_ca"] = _read_ca(Path(tls_ca))
    if not data.get("tls_ca"):
        if offline:
            raise ConfigError("--offline needs the CA: give --tls-ca FILE")
        data["tls_ca"] = _confirmed_ca(data["api_url"], ca_fingerprint)
    elif ca_fingerprint and not trust.matches(ca_fingerprint, data["tls_ca"]):
        raise Forbidden(f"the CA given has fingerprint {trust.fingerprint(data['tls_ca'])}, "
                        "not the --ca-fingerprint given; nothing was saved")
    if not offline:
        _probe(data)
    path = config_path(root_option(ctx, "config_path"))
    _save(path, data)
    click.echo(f"saved CLI config to {path} (API {data['api_url']}, CA "
               f"{trust.fingerprint(data['tls_ca'])})")
    if not data.get("access_key"):
        click.echo("no access key: log in with `nimbus iam login --username USER` and run the "
                   "`export NIMBUS_TOKEN=…` line it prints")


def _from_file(path: str) -> dict[str, Any]:
    """The connection config in FILE (- = stdin)."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path) as f:
                text = f.read()
    except OSError as exc:
        raise ConfigError(f"--from {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise BadRequest(f"{path} is not a JSON connection config") from None
    if not isinstance(data, dict) or set(data) - set(CONFIG_FIELDS):
        raise BadRequest(f"{path} is not a Nimbus connection config")
    return data


def _read_ca(path: Path) -> str:
    pem = path.read_text()
    try:
        trust.fingerprint(pem)
    except ValueError:
        raise BadRequest(f"{path} is not a PEM certificate") from None
    return pem


def _confirmed_ca(api_url: str, expected: str | None) -> str:
    """The server's CA, once its fingerprint is the expected one or the user confirmed it."""
    pem = trust.fetch_ca(api_url)
    shown = trust.fingerprint(pem)
    if expected:
        if not trust.matches(expected, pem):
            raise Forbidden(f"the CA of {api_url} has fingerprint {shown}, not the "
                            "--ca-fingerprint given: a different server or a man in the "
                            "middle; nothing was saved")
        return pem
    if not sys.stdin.isatty():
        raise ConfigError(f"cannot confirm the CA of {api_url} without a terminal: pass "
                          "--tls-ca FILE or --ca-fingerprint (compare with the control-plane "
                          "host's; see docs/configuration.md)")
    click.echo(f"The control plane at {api_url} presents this CA:\n"
               f"  {shown}\n  {trust.hex_fingerprint(pem)}\n"
               "Compare it on the control-plane host with:\n"
               "  openssl x509 -in /var/lib/nimbus/ca.crt -noout -fingerprint -sha256", err=True)
    if not click.confirm("Trust this CA?", default=False, err=True):
        raise Forbidden("CA not trusted; nothing was saved")
    return pem


def _probe(data: dict[str, Any]) -> None:
    """One verified call (TLS against the CA, the hostname, the API answering)."""
    from nimbus.client import ApiClient

    client = ApiClient(data["api_url"], ca_pem=data["tls_ca"], timeout=15)
    try:
        client.request("GET", "/v1/version")
    finally:
        client.close()


def _save(path: Path, data: dict[str, Any]) -> None:
    from nimbus.store.files import ensure_private_dir, write_private

    ensure_private_dir(path.parent)
    write_private(path, json.dumps({k: data.get(k) for k in CONFIG_FIELDS}, indent=2) + "\n")
