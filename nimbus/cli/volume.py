"""`nimbus volume …`: NFS volumes served by one node to the members of a swarm, on the overlay."""

from __future__ import annotations

import click

from nimbus.cli.context import api, complete_node, complete_swarm, completer
from nimbus.cli.context import path_segment as _seg
from nimbus.cli.output import emit, output_option, safe

COLUMNS = ["name", "node", "swarm", "status", "server_ip", "export_path", "folder"]
DETAIL = ["name", "id", "status", "error", "node", "server_ip", "export_path", "folder",
          "swarm", "root_squash", "docker_volume", "created_at", "ready_at"]
complete_volume = completer("/v1/volumes")


@click.group()
def volume() -> None:
    """NFS volumes: create, list, describe, delete."""


@volume.command("create")
@click.option("--name", required=True, help="Volume name: 1-63 of a-z, 0-9, '-'.")
@click.option("--node", "node_ref", required=True, help="The node that serves it (id or name).",
              shell_complete=complete_node)
@click.option("--swarm", "swarm_ref", required=True,
              help="The swarm whose members may mount it (id or name).",
              shell_complete=complete_swarm)
@click.option("--folder", default=None,
              help="Absolute folder on the serving node (default: volumes/NAME in its "
                     "agent's data dir).")
@click.option("--no-root-squash", is_flag=True,
              help="Let clients' root act as root on the files (default: squashed to "
                     "nobody).")
@output_option
@click.pass_context
def create(ctx: click.Context, name: str, node_ref: str, swarm_ref: str,
           folder: str | None, no_root_squash: bool, fmt: str) -> None:
    """Export a folder of NODE over NFSv4 to SWARM's members; Docker volume nimbus-NAME on each."""
    body = {"name": name, "node": node_ref, "swarm": swarm_ref,
            "root_squash": not no_root_squash, **({"folder": folder} if folder else {})}
    _show(api(ctx, timeout=120).request("POST", "/v1/volumes", body), fmt)


@volume.command("list")
@output_option
@click.pass_context
def list_volumes(ctx: click.Context, fmt: str) -> None:
    """List volumes."""
    emit(api(ctx).request("GET", "/v1/volumes"), fmt, COLUMNS)


@volume.command("describe")
@click.argument("ref", metavar="VOLUME", shell_complete=complete_volume)
@output_option
@click.pass_context
def describe(ctx: click.Context, ref: str, fmt: str) -> None:
    """Show a volume: where it is served, who may mount it, each member's Docker volume."""
    _show(api(ctx).request("GET", f"/v1/volumes/{_seg(ref)}"), fmt)


@volume.command("delete")
@click.argument("ref", metavar="VOLUME", shell_complete=complete_volume)
@click.option("--force", is_flag=True,
              help="Also while the serving node is offline (its export goes when it is "
                     "back). Never while a service maps the volume.")
@output_option
@click.pass_context
def delete(ctx: click.Context, ref: str, force: bool, fmt: str) -> None:
    """Remove the export and the members' Docker volumes; the files stay in the folder."""
    query = "?force=true" if force else ""
    data = api(ctx, timeout=60).request("DELETE", f"/v1/volumes/{_seg(ref)}{query}")
    if fmt == "json":
        emit(data, fmt)
        return
    click.echo(f"volume {safe(data['name'])} deleted; {safe(data['kept'])}")


def _show(data: dict, fmt: str) -> None:
    if fmt == "json":
        emit(data, fmt)
        return
    emit({k: data.get(k) for k in DETAIL}, fmt, DETAIL)
    click.echo("")
    clients = data.get("clients") or []
    click.echo(f"clients: {safe(', '.join(clients)) if clients else '(none)'}")
    mounts = [{"node": n, "docker_volume": m} for n, m in sorted(
        (data.get("mounts") or {}).items())]
    if mounts:
        emit(mounts, fmt, ["node", "docker_volume"])
