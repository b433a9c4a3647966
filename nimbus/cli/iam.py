"""`nimbus iam …`: users, keys, passwords, login and tokens."""

from __future__ import annotations

import json

import click

from nimbus.cli.context import api, completer, reauth_body
from nimbus.cli.context import path_segment as _seg
from nimbus.cli.output import emit, output_option
from nimbus.cli.secrets import current_password_options, read_secret, secret_options
from nimbus.errors import ConfigError

USER_COLUMNS = ["id", "username", "admin", "has_password", "created_at"]
complete_user = completer("/v1/iam/users", help_field="username")  # users have no `name`


@click.group()
def iam() -> None:
    """Users, API keys, passwords and tokens."""


@iam.command("create-user")
@click.option("--username", required=True)
@click.option("--admin", is_flag=True, help="Give the user full rights.")
@output_option
@click.pass_context
def create_user(ctx: click.Context, username: str, admin: bool, fmt: str) -> None:
    """Create a user (admin only)."""
    emit(api(ctx).request("POST", "/v1/iam/users", {"username": username, "admin": admin}),
         fmt, USER_COLUMNS)


@iam.command("list-users")
@output_option
@click.pass_context
def list_users(ctx: click.Context, fmt: str) -> None:
    """List users (admin only)."""
    emit(api(ctx).request("GET", "/v1/iam/users"), fmt, USER_COLUMNS)


@iam.command("delete-user")
@click.argument("user_id", shell_complete=complete_user)
@output_option
@click.pass_context
def delete_user(ctx: click.Context, user_id: str, fmt: str) -> None:
    """Delete a user, its keys and (in effect) its tokens."""
    emit(api(ctx).request("DELETE", f"/v1/iam/users/{_seg(user_id)}"), fmt)


@iam.command("create-key")
@click.option("--user-id", required=True, shell_complete=complete_user)
@current_password_options
@click.option("--write-config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Write a ready connection config with the new key to FILE (0600) instead "
                     "of printing the secret.")
@output_option
@click.pass_context
def create_key(ctx: click.Context, user_id: str, current_password: str | None,
               current_password_file: str | None, config_file: str | None, fmt: str) -> None:
    """Create an API key pair; the secret is shown once (or written with --write-config)."""
    from pathlib import Path

    from nimbus.cli.context import cli_config_file, load_cli_config

    target = Path(config_file) if config_file else None
    if target is not None and target.exists():
        raise ConfigError(f"{target} already exists; choose a new file")
    body = reauth_body(ctx, current_password, current_password_file)
    data = api(ctx).request("POST", f"/v1/iam/users/{_seg(user_id)}/keys", body)
    if target is None:
        emit(data, fmt)
        return
    from nimbus.store.files import write_private

    current = load_cli_config(cli_config_file(ctx))
    connection = {"api_url": current["api_url"], "access_key": data["access_key"],
                  "secret_key": data["secret_key"], "tls_ca": current.get("tls_ca")}
    write_private(target, json.dumps(connection, indent=2) + "\n")  # SECURITY: 0600
    shown = {k: v for k, v in data.items() if k != "secret_key"}
    emit({**shown, "config_file": str(target)}, fmt)
    if fmt != "json":
        click.echo(f"connection config written to {target} (0600); use it with "
                   f"`nimbus --config {target} …` or `nimbus configure --from {target}`",
                   err=True)


@iam.command("list-keys")
@click.option("--user-id", required=True, shell_complete=complete_user)
@output_option
@click.pass_context
def list_keys(ctx: click.Context, user_id: str, fmt: str) -> None:
    """List a user's access keys (never their secrets)."""
    emit(api(ctx).request("GET", f"/v1/iam/users/{_seg(user_id)}/keys"), fmt,
         ["access_key", "user_id", "created_at"])


@iam.command("delete-key")
@click.option("--user-id", required=True, shell_complete=complete_user)
@click.option("--key-id", required=True, help="The access key (NBUS…).")
@output_option
@click.pass_context
def delete_key(ctx: click.Context, user_id: str, key_id: str, fmt: str) -> None:
    """Delete an API key; requests signed with it fail at once."""
    emit(api(ctx).request("DELETE", f"/v1/iam/users/{_seg(user_id)}/keys/{_seg(key_id)}"), fmt)


@iam.command("set-password")
@click.option("--user-id", required=True, shell_complete=complete_user)
@secret_options("password", "new password", envvar="NIMBUS_PASSWORD")
@current_password_options
@output_option
@click.pass_context
def set_password(ctx: click.Context, user_id: str, password: str | None,
                 password_file: str | None, current_password: str | None,
                 current_password_file: str | None, fmt: str) -> None:
    """Set a user's password; tokens issued before stop working."""
    body = reauth_body(ctx, current_password, current_password_file)
    body["password"] = read_secret("new password", flag="--password", value=password,
                                   file=password_file, envvar="NIMBUS_PASSWORD", confirm=True)
    emit(api(ctx).request("POST", f"/v1/iam/users/{_seg(user_id)}/password", body), fmt)


@iam.command("login")
@click.option("--username", required=True)
@secret_options("password", "password", envvar="NIMBUS_PASSWORD")
@output_option
@click.pass_context
def login(ctx: click.Context, username: str, password: str | None, password_file: str | None,
          fmt: str) -> None:
    """Log in with a password; prints a JWT and an export line."""
    password = read_secret("password", flag="--password", value=password, file=password_file,
                           envvar="NIMBUS_PASSWORD")
    data = api(ctx, auth=False).request("POST", "/v1/iam/login",
                                        {"username": username, "password": password})
    _print_token(data, fmt)


@iam.command("get-token")
@output_option
@click.pass_context
def get_token(ctx: click.Context, fmt: str) -> None:
    """Exchange the configured HMAC key for a 1-hour JWT."""
    _print_token(api(ctx).request("POST", "/v1/iam/token", {}), fmt)


def _print_token(data: dict, fmt: str) -> None:
    if fmt == "json":
        emit(data, fmt)
        return
    click.echo(data["token"])  # SECURITY: the token is what the user asked for
    click.echo(f"export NIMBUS_TOKEN={data['token']}")  # SECURITY: requested output
