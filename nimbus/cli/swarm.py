"""`nimbus swarm …`: Docker Swarm groups of Nimbus nodes, every Swarm port on the overlay."""

from __future__ import annotations

import click

from nimbus.cli.context import api, complete_node, complete_swarm
from nimbus.cli.context import path_segment as _seg
from nimbus.cli.output import emit, output_option, safe

SWARM_COLUMNS = ["id", "name", "status", "manager", "members", "created_at"]
MEMBER_COLUMNS = ["name", "node_id", "role", "state", "availability", "engine_version"]


@click.group()
def swarm() -> None:
    """Docker Swarm groups: create, add-node, remove-node, list, describe, delete."""


@swarm.command("create")
@click.option("--name", required=True, help="A unique name for the swarm group.")
@output_option
@click.pass_context
def create(ctx: click.Context, name: str, fmt: str) -> None:
    """Create an empty swarm group; the first node added becomes its manager."""
    emit(api(ctx).request("POST", "/v1/swarms", {"name": name}), fmt, SWARM_COLUMNS)


@swarm.command("add-node")
@click.option("--swarm", "swarm_ref", required=True, help="Swarm id or name.",
              shell_complete=complete_swarm)
@click.option("--node", "node_ref", required=True, help="Node id or name.",
              shell_complete=complete_node)
@click.option("--role", type=click.Choice(["manager", "worker"]), default=None,
              help="Default: manager for the first node, worker after that.")
@output_option
@click.pass_context
def add_node(ctx: click.Context, swarm_ref: str, node_ref: str, role: str | None,
             fmt: str) -> None:
    """Add a node (it needs a Docker Engine): `swarm init` or `swarm join` on the node."""
    body = {"node": node_ref, **({"role": role} if role else {})}
    data = api(ctx, timeout=150).request("POST", f"/v1/swarms/{_seg(swarm_ref)}/nodes", body)
    _show(data, fmt)


@swarm.command("remove-node")
@click.option("--swarm", "swarm_ref", required=True, help="Swarm id or name.",
              shell_complete=complete_swarm)
@click.option("--node", "node_ref", required=True, help="Node id or name.",
              shell_complete=complete_node)
@click.option("--force", is_flag=True,
              help="Also remove the last manager while other members remain.")
@output_option
@click.pass_context
def remove_node(ctx: click.Context, swarm_ref: str, node_ref: str, force: bool,
                fmt: str) -> None:
    """The node leaves the swarm; the manager forgets it (`docker node rm`)."""
    query = "?force=true" if force else ""
    data = api(ctx, timeout=150).request(
        "DELETE", f"/v1/swarms/{_seg(swarm_ref)}/nodes/{_seg(node_ref)}{query}")
    _show(data, fmt)


@swarm.command("list")
@output_option
@click.pass_context
def list_swarms(ctx: click.Context, fmt: str) -> None:
    """List swarm groups."""
    data = api(ctx).request("GET", "/v1/swarms")
    if fmt == "json":
        emit(data, fmt)
        return
    rows = [{**s, "members": len(s.get("nodes", []))} for s in data]
    emit(rows, fmt, SWARM_COLUMNS)


@swarm.command("describe")
@click.argument("swarm_ref", metavar="SWARM", shell_complete=complete_swarm)
@output_option
@click.pass_context
def describe(ctx: click.Context, swarm_ref: str, fmt: str) -> None:
    """Show a swarm and its members as the manager's Docker reports them."""
    from nimbus.cli import agentread

    _show(agentread.fresh(api(ctx), f"/v1/swarms/{_seg(swarm_ref)}"), fmt)


@swarm.command("delete")
@click.argument("swarm_ref", metavar="SWARM", shell_complete=complete_swarm)
@output_option
@click.pass_context
def delete(ctx: click.Context, swarm_ref: str, fmt: str) -> None:
    """Every member leaves the swarm (its stacks go with it); the group is removed."""
    data = api(ctx, timeout=150).request("DELETE", f"/v1/swarms/{_seg(swarm_ref)}")
    if fmt == "json":
        emit(data, fmt)
        return
    click.echo(f"swarm {safe(data['name'])} ({safe(data['id'])}) deleted")


def _show(data: dict, fmt: str) -> None:
    if fmt == "json":
        emit(data, fmt)
        return
    emit({**data, "members": len(data.get("nodes", []))}, fmt,
         ["id", "name", "status", "manager", "members"])
    click.echo("")
    emit(data.get("nodes", []), fmt, MEMBER_COLUMNS)

