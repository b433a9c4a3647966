"""`nimbus version`: client (and server) version."""

from __future__ import annotations

import os
from typing import Any

import click

from nimbus import __version__
from nimbus.cli.context import config_path
from nimbus.cli.output import emit, output_option
from nimbus.errors import NimbusError


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
