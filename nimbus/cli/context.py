"""The CLI's environment: its config file, an authenticated API client, API-fed completion."""

from __future__ import annotations

import json
import os

import click

from nimbus.client import ApiClient, BearerAuth, HmacAuth
from nimbus.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

CONFIG_FIELDS = ("api_url", "access_key", "secret_key", "tls_ca")


def config_file(explicit: str | None) -> str:
    """The CLI config's path. (os.path, not pathlib: every command reads it, and pathlib's
    import is a measurable share of the CLI's start-up.)"""
    return explicit or os.path.join(os.path.expanduser("~"), ".nimbus", "config.json")


def config_path(explicit: str | None) -> Path:
    from pathlib import Path

    return Path(config_file(explicit))


def load_cli_config(path: str | Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        raise ConfigError(f"no CLI config at {path}; run `nimbus configure` first") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"reading {path}: {exc}") from None
    if not isinstance(data, dict) or not data.get("api_url"):
        raise ConfigError(f"{path} is not a Nimbus CLI config (api_url missing)")
    from nimbus.cli.trust import check_api_url
    from nimbus.errors import BadRequest

    try:
        check_api_url(str(data["api_url"]))
    except BadRequest as exc:
        raise ConfigError(f"{path}: {exc.message}; fix it with `nimbus configure`") from None
    if os.stat(path).st_mode & 0o077:
        raise ConfigError(f"{path} holds a secret key but others can read it; "
                          f"fix it with: chmod 600 {path}")
    return data


def root_option(ctx: click.Context, name: str) -> Any:
    """A root option's value (`config_path`, `token`, `token_file`, `debug`). Read from the
    root's parameters, not its callback's `obj`: completion parses without calling back."""
    return ctx.find_root().params.get(name)


def cli_config_file(ctx: click.Context) -> str:
    """The CLI config file this invocation uses (--config, NIMBUS_CLI_CONFIG or the default)."""
    return config_file(root_option(ctx, "config_path"))


def api(ctx: click.Context, *, auth: bool = True, timeout: float = 30.0) -> ApiClient:
    """A client for the configured API, signing with HMAC unless a token is given; `timeout`
    is per request (longer for work the server does on the nodes, as for swarms)."""
    cfg = load_cli_config(cli_config_file(ctx))
    ca = cfg.get("tls_ca") or None
    if ca and not ca.lstrip().startswith("-----BEGIN"):
        with open(ca) as f:
            ca = f.read()
    credentials: Any = None
    if auth:
        token = bearer_token(ctx)
        if token:
            credentials = BearerAuth(token)
        elif cfg.get("access_key") and cfg.get("secret_key"):
            credentials = HmacAuth(cfg["access_key"], cfg["secret_key"])
        else:
            raise ConfigError("no credentials: set NIMBUS_TOKEN or configure an access key")
    return ApiClient(cfg["api_url"], ca_pem=ca, auth=credentials, timeout=timeout)


def bearer_token(ctx: click.Context) -> str | None:
    """The JWT from --token, --token-file or NIMBUS_TOKEN (read once), or None for HMAC."""
    from nimbus.cli.secrets import read_secret

    root = ctx.find_root()
    cache = root.meta  # click's per-invocation scratch space, shared by every context
    if "nimbus.token" not in cache:
        value, file = root.params.get("token"), root.params.get("token_file")
        given = value is not None or file is not None or bool(os.environ.get("NIMBUS_TOKEN"))
        cache["nimbus.token"] = (read_secret("token", flag="--token", value=value, file=file,
                                             envvar="NIMBUS_TOKEN", prompt=False)
                                 if given else None)
    return cache["nimbus.token"]


def reauth_body(ctx: click.Context, value: str | None, file: str | None) -> dict[str, str]:
    """With a JWT the server wants the caller's current password too (creating keys, passwords
    and join material); HMAC needs nothing. value/file: secrets.current_password_options."""
    if not bearer_token(ctx):
        return {}
    from nimbus.cli.secrets import read_secret

    return {"current_password": read_secret(
        "current password", flag="--current-password", value=value, file=file,
        envvar="NIMBUS_CURRENT_PASSWORD")}


def path_segment(value: str) -> str:
    """Quote a user-supplied ID for a URL path; the server validates its format."""
    from urllib.parse import quote

    return quote(value, safe="")


COMPLETION_TIMEOUT = 2.0  # seconds: a shell waiting on a dead server must not hang


def completer(path: str, help_field: str = "status",
              ) -> Callable[[click.Context, Any, str], list[Any]]:
    """A `shell_complete` callback offering the names (else the ids) of the objects listed
    at `path` (GET), each with its `help_field` as the description zsh and fish show.

    Silent on every failure (no config, server down, refused): completion prints nothing
    into the user's shell but the candidates.
    """
    def complete(ctx: click.Context, param: Any, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        if root_option(ctx, "token_file") == "-":  # stdin is the user's terminal here
            return []
        try:
            rows = api(ctx, timeout=COMPLETION_TIMEOUT).request("GET", path)
        except Exception:  # noqa: BLE001 - whatever went wrong, offer nothing
            return []
        rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
        for key in ("name", "id"):
            found = [CompletionItem(str(r[key]), help=str(r.get(help_field) or "") or None)
                     for r in rows if str(r.get(key) or "").startswith(incomplete)]
            if found:
                return found
        return []
    return complete


complete_node = completer("/v1/nodes")
complete_swarm = completer("/v1/swarms")
complete_service = completer("/v1/services")
