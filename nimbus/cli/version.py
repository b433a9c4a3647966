"""`nimbus version`: client (and server) version, and the Python and platform it runs on."""

from __future__ import annotations

import os
from typing import Any

import click

from nimbus import __version__
from nimbus.cli.context import cli_config_file
from nimbus.cli.output import emit, output_option
from nimbus.errors import NimbusError


@click.command()
@output_option
@click.pass_context
def version(ctx: click.Context, fmt: str) -> None:
    """Print the client version, the Python and platform it runs on, and the server's
    version when a config exists."""
    from nimbus.cli.context import api
    from nimbus.launcher import describe_platform, describe_python

    info: dict[str, Any] = {"client": __version__, "python": describe_python(),
                            "platform": describe_platform()}
    if os.path.exists(cli_config_file(ctx)):
        try:
            info["server"] = api(ctx, auth=False).request("GET", "/v1/version")["version"]
        except NimbusError as exc:
            info["server_error"] = exc.message
    emit(info, fmt)
