"""`nimbus node …`: add, token, list, describe, logs, drain, undrain, delete, update-ip.

NODE is a node's ID or its name; the server resolves either.
"""

from __future__ import annotations

import click

from nimbus.cli.context import api, complete_node, reauth_body
from nimbus.cli.context import path_segment as _seg
from nimbus.cli.output import emit, output_option, safe
from nimbus.cli.secrets import current_password_options

NODE_COLUMNS = ["id", "name", "status", "ip_address", "wireguard_ip", "hostname", "arch",
                "agent_version", "last_seen"]
DESCRIBE_FIELDS = [*NODE_COLUMNS, "wireguard_public_key", "created_at", "joined_at",
                   "cert_expires_at", "cpu", "memory", "disk"]


@click.group()
def node() -> None:
    """Manage nodes: add, token, list, describe, logs, drain, undrain, delete, update-ip.

    NODE is a node's ID or its name.
    """


@node.command("add")
@click.option("--get-token", is_flag=True, hidden=True,
              help="Accepted for compatibility: the token is always printed.")
@click.option("--ip", "ip_address", required=True, help="The node's public/LAN IP address.")
@click.option("--name", default=None, help="A unique name (default derived from the ID).")
@current_password_options
@output_option
@click.pass_context
def add(ctx: click.Context, get_token: bool, ip_address: str, name: str | None,
        current_password: str | None, current_password_file: str | None, fmt: str) -> None:
    """Create a pending node and print its join token (valid 10 minutes, single use)."""
    body = {"ip_address": ip_address, **({"name": name} if name else {}),
            **reauth_body(ctx, current_password, current_password_file)}
    _print_join(api(ctx).request("POST", "/v1/nodes", body), fmt, "created")


@node.command("token")
@click.argument("node_ref", metavar="NODE", shell_complete=complete_node)
@current_password_options
@output_option
@click.pass_context
def token(ctx: click.Context, node_ref: str, current_password: str | None,
          current_password_file: str | None, fmt: str) -> None:
    """A fresh join token for a pending node; its previous token stops working."""
    body = reauth_body(ctx, current_password, current_password_file)
    _print_join(api(ctx).request("POST", f"/v1/nodes/{_seg(node_ref)}/token", body), fmt,
                "has a new join token")


def _print_join(data: dict, fmt: str, what: str) -> None:
    """The token alone on stdout (for `> node.token`), the explanation on stderr."""
    if fmt == "json":
        emit(data, fmt)
        return
    n = data["node"]
    click.echo(f"node {safe(n['id'])} ({safe(n['name'])}) {what}, overlay IP "
               f"{safe(str(n['wireguard_ip']))}", err=True)
    click.echo("join it on the node with:  nimbus agent --join --token-file FILE", err=True)
    click.echo(data["join_token"])  # SECURITY: the one-time token is what was asked for


@node.command("list")
@output_option
@click.pass_context
def list_nodes(ctx: click.Context, fmt: str) -> None:
    """List nodes with their live status."""
    emit(api(ctx).request("GET", "/v1/nodes"), fmt, NODE_COLUMNS)


@node.command("describe")
@click.argument("node_id", metavar="NODE", shell_complete=complete_node)
@output_option
@click.pass_context
def describe(ctx: click.Context, node_id: str, fmt: str) -> None:
    """Show one node, its metrics and its recent tasks."""
    data = api(ctx).request("GET", f"/v1/nodes/{_seg(node_id)}")
    if fmt == "json":
        emit(data, fmt)
        return
    emit(data, fmt, DESCRIBE_FIELDS)
    click.echo("\ntasks:")
    emit(data.get("tasks", []), fmt, ["id", "type", "status", "attempts", "finished_at",
                                      "output"])


@node.command("drain")
@click.argument("node_id", metavar="NODE", shell_complete=complete_node)
@output_option
@click.pass_context
def drain(ctx: click.Context, node_id: str, fmt: str) -> None:
    """Mark a node as draining (no new work)."""
    emit(api(ctx).request("POST", f"/v1/nodes/{_seg(node_id)}/drain", {}), fmt, NODE_COLUMNS)


@node.command("undrain")
@click.argument("node_id", metavar="NODE", shell_complete=complete_node)
@output_option
@click.pass_context
def undrain(ctx: click.Context, node_id: str, fmt: str) -> None:
    """Take a draining node back into service."""
    emit(api(ctx).request("POST", f"/v1/nodes/{_seg(node_id)}/undrain", {}), fmt, NODE_COLUMNS)


@node.command("delete")
@click.argument("node_id", metavar="NODE", shell_complete=complete_node)
@click.option("--force", is_flag=True,
              help="Delete even the last manager of a swarm that has other members.")
@output_option
@click.pass_context
def delete(ctx: click.Context, node_id: str, force: bool, fmt: str) -> None:
    """Revoke a node's certificates and remove it from the mesh and its swarm."""
    query = "?force=true" if force else ""
    emit(api(ctx).request("DELETE", f"/v1/nodes/{_seg(node_id)}{query}"), fmt)


@node.command("logs")
@click.argument("node_ref", metavar="NODE", shell_complete=complete_node)
@click.option("--tail", type=click.IntRange(0, 2000), default=100, show_default=True,
              help="How many of the agent's last lines.")
@output_option
@click.pass_context
def logs(ctx: click.Context, node_ref: str, tail: int, fmt: str) -> None:
    """The node agent's own recent log lines (kept in its memory, secrets masked)."""
    from nimbus.cli import agentread

    agentread.read(api(ctx), f"/v1/nodes/{_seg(node_ref)}/logs", {"tail": tail}, False,
                   agentread.plain_line(fmt), closable=False)


@node.command("update-ip")
@click.argument("node_id", metavar="NODE", shell_complete=complete_node)
@click.option("--ip", "ip_address", required=True, help="The node's new public/LAN IP.")
@output_option
@click.pass_context
def update_ip(ctx: click.Context, node_id: str, ip_address: str, fmt: str) -> None:
    """Change a node's endpoint and redistribute peers to every node."""
    emit(api(ctx).request("POST", f"/v1/nodes/{_seg(node_id)}/ip",
                          {"ip_address": ip_address}), fmt, NODE_COLUMNS)
