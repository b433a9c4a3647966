"""The CLI's environment: its config file and an authenticated API client."""

from __future__ import annotations

import json
import os

from nimbus.cli import cmdline
from nimbus.client import ApiClient, BearerAuth, HmacAuth
from nimbus.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
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


def api(ctx: cmdline.Context, *, auth: bool = True, timeout: float = 30.0) -> ApiClient:
    """A client for the configured API, signing with HMAC unless a token is given; `timeout`
    is per request (longer for work the server does on the nodes, as for swarms)."""
    root = ctx.find_root().obj or {}
    cfg = load_cli_config(config_file(root.get("config_path")))
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


def bearer_token(ctx: cmdline.Context) -> str | None:
    """The JWT from --token, --token-file or NIMBUS_TOKEN (read once), or None for HMAC."""
    from nimbus.cli.secrets import read_secret

    root = ctx.find_root().obj
    if root is None:
        return None
    if "resolved_token" not in root:
        given = root.get("token") is not None or root.get("token_file") is not None
        root["resolved_token"] = (read_secret("token", flag="--token", value=root.get("token"),
                                              file=root.get("token_file"),
                                              envvar="NIMBUS_TOKEN", prompt=False)
                                  if given or os.environ.get("NIMBUS_TOKEN") else None)
    return root["resolved_token"]


def path_segment(value: str) -> str:
    """Quote a user-supplied ID for a URL path; the server validates its format."""
    from urllib.parse import quote

    return quote(value, safe="")
