"""`nimbus node …`: add, token, list, describe, drain, undrain, delete, update-ip.

NODE is a node's ID or its name; the server resolves either.
"""

from __future__ import annotations

from nimbus.cli import cmdline
from nimbus.cli.context import api
from nimbus.cli.context import path_segment as _seg
from nimbus.cli.output import emit, output_option, safe

NODE_COLUMNS = ["id", "name", "status", "ip_address", "wireguard_ip", "hostname", "arch",
                "agent_version", "last_seen"]
DESCRIBE_FIELDS = [*NODE_COLUMNS, "wireguard_public_key", "created_at", "joined_at",
                   "cert_expires_at", "cpu", "memory", "disk"]


@cmdline.group()
def node() -> None:
    """Manage nodes: add, token, list, describe, drain, undrain, delete, update-ip.

    NODE is a node's ID or its name.
    """


@node.command("add")
@cmdline.option("--get-token", is_flag=True, hidden=True,
                help="Accepted for compatibility: the token is always printed.")
@cmdline.option("--ip", "ip_address", required=True, help="The node's public/LAN IP address.")
@cmdline.option("--name", default=None, help="A unique name (default derived from the ID).")
@output_option
@cmdline.pass_context
def add(ctx: cmdline.Context, get_token: bool, ip_address: str, name: str | None,
        fmt: str) -> None:
    """Create a pending node and print its join token (valid 10 minutes, single use)."""
    body = {"ip_address": ip_address, **({"name": name} if name else {})}
    _print_join(api(ctx).request("POST", "/v1/nodes", body), fmt, "created")


@node.command("token")
@cmdline.argument("node_ref", metavar="NODE")
@output_option
@cmdline.pass_context
def token(ctx: cmdline.Context, node_ref: str, fmt: str) -> None:
    """A fresh join token for a pending node; its previous token stops working."""
    _print_join(api(ctx).request("POST", f"/v1/nodes/{_seg(node_ref)}/token", {}), fmt,
                "has a new join token")


def _print_join(data: dict, fmt: str, what: str) -> None:
    """The token alone on stdout (for `> node.token`), the explanation on stderr."""
    if fmt == "json":
        emit(data, fmt)
        return
    n = data["node"]
    cmdline.echo(f"node {safe(n['id'])} ({safe(n['name'])}) {what}, overlay IP "
                 f"{safe(str(n['wireguard_ip']))}", err=True)
    cmdline.echo("join it on the node with:  nimbus agent --join --token-file FILE", err=True)
    cmdline.echo(data["join_token"])  # SECURITY: the one-time token is what was asked for


@node.command("list")
@output_option
@cmdline.pass_context
def list_nodes(ctx: cmdline.Context, fmt: str) -> None:
    """List nodes with their live status."""
    emit(api(ctx).request("GET", "/v1/nodes"), fmt, NODE_COLUMNS)


@node.command("describe")
@cmdline.argument("node_id", metavar="NODE")
@output_option
@cmdline.pass_context
def describe(ctx: cmdline.Context, node_id: str, fmt: str) -> None:
    """Show one node, its metrics and its recent tasks."""
    data = api(ctx).request("GET", f"/v1/nodes/{_seg(node_id)}")
    if fmt == "json":
        emit(data, fmt)
        return
    emit(data, fmt, DESCRIBE_FIELDS)
    cmdline.echo("\ntasks:")
    emit(data.get("tasks", []), fmt, ["id", "type", "status", "attempts", "finished_at",
                                      "output"])


@node.command("drain")
@cmdline.argument("node_id", metavar="NODE")
@output_option
@cmdline.pass_context
def drain(ctx: cmdline.Context, node_id: str, fmt: str) -> None:
    """Mark a node as draining (no new work)."""
    emit(api(ctx).request("POST", f"/v1/nodes/{_seg(node_id)}/drain", {}), fmt, NODE_COLUMNS)


@node.command("undrain")
@cmdline.argument("node_id", metavar="NODE")
@output_option
@cmdline.pass_context
def undrain(ctx: cmdline.Context, node_id: str, fmt: str) -> None:
    """Take a draining node back into service."""
    emit(api(ctx).request("POST", f"/v1/nodes/{_seg(node_id)}/undrain", {}), fmt, NODE_COLUMNS)


@node.command("delete")
@cmdline.argument("node_id", metavar="NODE")
@cmdline.option("--force", is_flag=True,
                help="Delete even the last manager of a swarm that has other members.")
@output_option
@cmdline.pass_context
def delete(ctx: cmdline.Context, node_id: str, force: bool, fmt: str) -> None:
    """Revoke a node's certificates and remove it from the mesh and its swarm."""
    query = "?force=true" if force else ""
    emit(api(ctx).request("DELETE", f"/v1/nodes/{_seg(node_id)}{query}"), fmt)


@node.command("update-ip")
@cmdline.argument("node_id", metavar="NODE")
@cmdline.option("--ip", "ip_address", required=True, help="The node's new public/LAN IP.")
@output_option
@cmdline.pass_context
def update_ip(ctx: cmdline.Context, node_id: str, ip_address: str, fmt: str) -> None:
    """Change a node's endpoint and redistribute peers to every node."""
    emit(api(ctx).request("POST", f"/v1/nodes/{_seg(node_id)}/ip",
                          {"ip_address": ip_address}), fmt, NODE_COLUMNS)
