"""`nimbus version`: client (and server) version, and the Python and platform it runs on."""

from __future__ import annotations

import os
from typing import Any

from nimbus import __version__
from nimbus.cli import cmdline
from nimbus.cli.context import config_file
from nimbus.cli.output import emit, output_option
from nimbus.errors import NimbusError


@cmdline.command()
@output_option
@cmdline.pass_context
def version(ctx: cmdline.Context, fmt: str) -> None:
    """Print the client version, the Python and platform it runs on, and the server's
    version when a config exists."""
    from nimbus.cli.context import api
    from nimbus.launcher import describe_platform, describe_python

    info: dict[str, Any] = {"client": __version__, "python": describe_python(),
                            "platform": describe_platform()}
    root = ctx.find_root().obj or {}
    if os.path.exists(config_file(root.get("config_path"))):
        try:
            info["server"] = api(ctx, auth=False).request("GET", "/v1/version")["version"]
        except NimbusError as exc:
            info["server_error"] = exc.message
    emit(info, fmt)
