"""`nimbus s3 …`: S3 object storage on SeaweedFS across nodes, every port on the overlay."""

from __future__ import annotations

import time
from typing import Any

import click

from nimbus.cli.context import api, completer
from nimbus.cli.context import path_segment as _seg
from nimbus.cli.output import emit, output_option, safe
from nimbus.errors import Conflict

COLUMNS = ["name", "status", "endpoint", "replication", "nodes", "id"]
DETAIL = ["name", "id", "status", "endpoint", "replication", "reads", "writes", "generation",
          "created_at"]
NODE_COLUMNS = ["name", "node_status", "wireguard_ip", "processes", "error"]
POLL_SEC = 1.0
complete_s3 = completer("/v1/s3")


@click.group()
def s3() -> None:
    """S3 storage (SeaweedFS): create, list, describe, credentials, update, delete."""


@s3.command("create")
@click.option("--name", required=True, help="Instance name: 1-63 of a-z, 0-9, '-'.")
@click.option("--nodes", required=True, metavar="N1,N2",
                help="Comma-separated node names or ids; the first runs master, filer and "
                     "the S3 gateway, every one a volume server.")
@click.option("--replication", type=click.Choice(["000", "001"]), default=None,
                help="001: every object on two nodes (default with 2+ nodes); 000: one copy.")
@click.option("--no-wait", is_flag=True, help="Return at once instead of waiting for ready.")
@click.option("--timeout", type=click.IntRange(1, 3600), default=180, show_default=True,
                help="Seconds to wait for ready.")
@output_option
@click.pass_context
def create(ctx: click.Context, name: str, nodes: str, replication: str | None,
           no_wait: bool, timeout: int, fmt: str) -> None:
    """Run SeaweedFS across NODES and wait until its S3 endpoint is ready."""
    refs = [n.strip() for n in nodes.split(",")]
    if any(not r for r in refs):
        raise click.UsageError("--nodes has an empty entry (N1,N2,…)")
    body: dict[str, Any] = {"name": name, "nodes": refs}
    if replication:
        body["replication"] = replication
    client = api(ctx)
    data = client.request("POST", "/v1/s3", body)
    if not no_wait:
        data = _wait_ready(client, data["id"], timeout)
    _show(data, fmt)


def _wait_ready(client: Any, ref: str, timeout: int) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = client.request("GET", f"/v1/s3/{_seg(ref)}")
        if data["status"] == "ready":
            return data
        if time.monotonic() > deadline:
            errors = [f"{n['name']}: {n['error']}" for n in data["nodes"] if n.get("error")]
            raise Conflict(f"S3 instance {data['name']} is still {data['status']} after "
                           f"{timeout} s" + (f" ({'; '.join(errors)})" if errors else "")
                           + "; see `nimbus s3 describe`")
        time.sleep(POLL_SEC)


@s3.command("list")
@output_option
@click.pass_context
def list_instances(ctx: click.Context, fmt: str) -> None:
    """List S3 instances."""
    data = api(ctx).request("GET", "/v1/s3")
    if fmt != "json":
        data = [{**d, "nodes": ",".join(n["name"] for n in d["nodes"])} for d in data]
    emit(data, fmt, COLUMNS)


@s3.command("describe")
@click.argument("ref", shell_complete=complete_s3)
@output_option
@click.pass_context
def describe(ctx: click.Context, ref: str, fmt: str) -> None:
    """Show an instance: endpoint, status, what still works, each node's processes."""
    _show(api(ctx).request("GET", f"/v1/s3/{_seg(ref)}"), fmt)


@s3.command("credentials")
@click.argument("ref", shell_complete=complete_s3)
@click.option("--rotate", is_flag=True,
                help="Issue a new secret first; the old one is refused from then on.")
@output_option
@click.pass_context
def credentials(ctx: click.Context, ref: str, rotate: bool, fmt: str) -> None:
    """Print the S3 access key, secret key and endpoint (admin only; audited)."""
    body = {"rotate": True} if rotate else {}
    data = api(ctx, timeout=90).request("POST", f"/v1/s3/{_seg(ref)}/credentials", body)
    emit(data, fmt, ["access_key", "secret_key", "endpoint"])


@s3.command("update")
@click.argument("ref", shell_complete=complete_s3)
@click.option("--replication", type=click.Choice(["000", "001"]), required=True,
                help="The new placement; nodes deleted from the cluster leave the instance.")
@output_option
@click.pass_context
def update(ctx: click.Context, ref: str, replication: str, fmt: str) -> None:
    """Change an instance, e.g. to 000 so writes work again after a node was deleted."""
    _show(api(ctx, timeout=90).request("PATCH", f"/v1/s3/{_seg(ref)}",
                                       {"replication": replication}), fmt)


@s3.command("delete")
@click.argument("ref", shell_complete=complete_s3)
@click.option("--purge-data", is_flag=True, help="Also delete the stored objects on the nodes.")
@output_option
@click.pass_context
def delete(ctx: click.Context, ref: str, purge_data: bool, fmt: str) -> None:
    """Stop every SeaweedFS process of the instance; its data stays unless --purge-data."""
    query = "?purge_data=true" if purge_data else ""
    data = api(ctx).request("DELETE", f"/v1/s3/{_seg(ref)}{query}")
    if fmt == "json":
        emit(data, fmt)
        return
    kept = "data deleted" if data["purge"] else "data kept on the nodes"
    click.echo(f"s3 instance {safe(data['name'])} deleted; {kept}")


def _show(data: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        emit(data, fmt)
        return
    emit({k: data.get(k) for k in DETAIL}, fmt, DETAIL)
    click.echo("")
    rows = [{**n, "processes": " ".join(f"{r}={s}" for r, s in n["processes"].items())}
            for n in data.get("nodes") or []]
    emit(rows, fmt, NODE_COLUMNS)
