"""`nimbus service …`: compose stacks deployed onto a swarm group."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from nimbus.cli.context import api, complete_service, complete_swarm
from nimbus.cli.context import path_segment as _seg
from nimbus.cli.output import emit, output_option
from nimbus.errors import ConfigError

SERVICE_COLUMNS = ["name", "swarm", "running", "desired", "status", "updated_at"]


@click.group()
def service() -> None:
    """Compose stacks on a swarm: deploy, list, describe, remove."""


def load_compose(path: str) -> dict[str, Any]:
    """The compose file as a dict: YAML (JSON is YAML too); one-line ConfigError otherwise."""
    try:
        text = Path(path).read_text() if path != "-" else sys.stdin.read()
    except OSError as exc:
        raise ConfigError(f"reading {path}: {exc.strerror or exc}") from None
    try:
        import yaml  # only this command needs it (see docs/decisions.md)
    except ImportError:
        return _json_compose(path, text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}: {problem}{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a compose file is a mapping with a 'services' section")
    return data


def _json_compose(path: str, text: str) -> dict[str, Any]:
    """Without PyYAML (a zipapp on a machine without python3-yaml) JSON still works."""
    import json

    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{path}: reading YAML needs PyYAML (Debian: apt install "
                          "python3-yaml; or pip install pyyaml); JSON compose files work "
                          "without it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a compose file is a mapping with a 'services' section")
    return data


@service.command("deploy")
@click.option("--swarm", "swarm_ref", required=True, help="Swarm id or name.",
              shell_complete=complete_swarm)
@click.option("--file", "-f", "path", required=True,
                  help="Compose file (YAML or JSON; - = stdin).")
@click.option("--name", required=True, help="Stack name: 1-63 of a-z, 0-9, '_' and '-'.")
@output_option
@click.pass_context
def deploy(ctx: click.Context, swarm_ref: str, path: str, name: str, fmt: str) -> None:
    """Deploy (or update) a compose stack on the swarm's manager."""
    body = {"name": name, "swarm": swarm_ref, "compose": load_compose(path)}
    _show(api(ctx, timeout=150).request("POST", "/v1/services", body), fmt)


@service.command("list")
@click.option("--swarm", "swarm_ref", default=None, help="Only stacks of this swarm.",
              shell_complete=complete_swarm)
@output_option
@click.pass_context
def list_services(ctx: click.Context, swarm_ref: str | None, fmt: str) -> None:
    """List stacks with their last known replica counts."""
    query = f"?swarm={_seg(swarm_ref)}" if swarm_ref else ""
    emit(api(ctx).request("GET", f"/v1/services{query}"), fmt, SERVICE_COLUMNS)


@service.command("describe")
@click.argument("name", shell_complete=complete_service)
@output_option
@click.pass_context
def describe(ctx: click.Context, name: str, fmt: str) -> None:
    """Show a stack's services and replicas as the swarm manager reports them now."""
    _show(api(ctx, timeout=60).request("GET", f"/v1/services/{_seg(name)}"), fmt)


@service.command("remove")
@click.argument("name", shell_complete=complete_service)
@output_option
@click.pass_context
def remove(ctx: click.Context, name: str, fmt: str) -> None:
    """Remove a stack (`docker stack rm` on the manager)."""
    data = api(ctx, timeout=150).request("DELETE", f"/v1/services/{_seg(name)}")
    if fmt == "json":
        emit(data, fmt)
        return
    click.echo(f"service {data['name']} removed")


def _show(data: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        emit(data, fmt)
        return
    emit(data, fmt, ["name", "swarm", "running", "desired", "status"])
    click.echo("")
    emit(data.get("services", []), fmt, ["name", "image", "running", "desired"])

