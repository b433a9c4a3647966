"""`nimbus lab`: up, status, ping, cli, restart, down — a real WireGuard mesh on this machine."""

from __future__ import annotations

import subprocess

import click

from nimbus.cli.output import emit, output_option, table


def _complete_lab(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The ids of this machine's labs (namespaces, state and data dirs); none on any error."""
    try:
        from nimbus.lab.orchestrate import all_labs

        return [i for i in all_labs() if i.startswith(incomplete)]
    except Exception:  # noqa: BLE001 - completion offers nothing rather than an error
        return []


lab_id_option = click.option("--id", "lab_id", default=None, shell_complete=_complete_lab,
                             help="Lab id (default: the only lab there is, else the newest).")


@click.group()
def lab() -> None:
    """A control plane and N agents in network namespaces, joined by real WireGuard (root)."""


def _open(lab_id: str | None):  # -> Lab (imported lazily)
    """The lab named by --id, else the only one, else the newest (saying so on stderr)."""
    from nimbus.lab.orchestrate import Lab, all_labs, check_requirements, resolve_id

    check_requirements()
    chosen = resolve_id(lab_id, newest=True)
    if lab_id is None and len(others := [i for i in all_labs() if i != chosen]) > 0:
        click.echo(f"using lab {chosen}, the newest (also: {', '.join(others)}; "
                   "choose with --id)", err=True)
    return Lab(chosen)


@lab.command("up")
@click.option("--nodes", type=click.IntRange(1, 240), default=3, show_default=True,
              help="Number of nodes to join.")
@click.option("--id", "lab_id", default=None, help="Lab id, 1-8 of [a-z0-9] (default random).")
@click.option("--keep-on-failure", is_flag=True,
              help="Leave a half-built lab in place for debugging (remove with `lab down`).")
@click.option("--docker", is_flag=True,
              help="Also run a dockerd per node with a local busybox image (docs/workloads.md).")
def up(nodes: int, lab_id: str | None, keep_on_failure: bool, docker: bool) -> None:
    """Build a lab: namespaces, `nimbus serve`, N joined agents; print nodes and pings."""
    from nimbus.lab import netns
    from nimbus.lab.orchestrate import Lab, LabError, all_labs, check_requirements

    check_requirements()
    if docker:
        from nimbus.lab.docker import check_requirements as docker_requirements

        docker_requirements()
    existing = all_labs()
    if lab_id is None:
        lab_id = next(i for i in iter(netns.new_lab_id, None) if i not in existing)
    try:
        netns.check_lab_id(lab_id)
    except ValueError as exc:
        raise LabError(str(exc)) from None
    if lab_id in existing:
        raise LabError(f"lab {lab_id} already exists; remove it with `nimbus lab down --id "
                       f"{lab_id}` or pick another --id")
    if existing:
        click.echo(f"note: lab(s) {', '.join(existing)} already exist; this makes another lab, "
                   f"{lab_id}; commands without --id now use it (the newest)", err=True)
    the_lab = Lab(lab_id)
    try:
        times = the_lab.up(nodes, echo=lambda s: click.echo(s, err=True), docker=docker)
    except BaseException:
        if keep_on_failure:
            click.echo(f"kept the failed lab; logs in {the_lab.dir / 'logs'}; "
                       f"remove it with: nimbus lab down --id {lab_id}", err=True)
        else:
            click.echo(f"lab up failed; removing lab {lab_id} (logs: use --keep-on-failure "
                       "to keep them)", err=True)
            the_lab.down()
        raise
    click.echo(f"lab {lab_id} is up: control plane in {times['control_plane']:.1f}s, "
               f"{nodes} node(s) ready {times['join_to_ready']:.1f}s after joining\n")
    _print_nodes(the_lab)
    _print_pings(the_lab, retry_for=15)
    click.echo(f"\nnext: nimbus lab cli -- node list    |    nimbus lab down --id {lab_id}")


def _print_nodes(the_lab) -> None:
    rows = the_lab.status()["nodes"]
    click.echo(table(rows, ["name", "id", "status", "underlay_ip", "wireguard_ip", "netns",
                            "interface"]))


def _print_pings(the_lab, retry_for: float) -> bool:
    """Ping matrix of the members still in the mesh (deleted nodes are left out)."""
    from nimbus.lab.pings import format_matrix

    members = the_lab.live_members()
    matrix = the_lab.ping(members, retry_for=retry_for)
    ok = all(matrix.values())
    click.echo(f"\noverlay ping matrix (ping -c1 -W1, from inside each namespace): "
               f"{sum(matrix.values())}/{len(matrix)} ok")
    click.echo(format_matrix(members, matrix))
    return ok


@lab.command("status")
@lab_id_option
@output_option
def status(lab_id: str | None, fmt: str) -> None:
    """Namespaces, interfaces, overlay addresses and status of every member."""
    data = _open(lab_id).status()
    if fmt == "json":
        emit(data, fmt)
        return
    cp = data["control_plane"]
    click.echo(f"lab {data['lab_id']}: control plane {cp['status']} in {cp['netns']} "
               f"({cp['interface']} {cp['wireguard_ip']}, API {cp['api_url']})")
    click.echo(table(data["nodes"], ["name", "id", "status", "underlay_ip", "wireguard_ip",
                                     "netns", "interface"]) if data["nodes"] else "(no nodes)")


@lab.command("ping")
@lab_id_option
def ping(lab_id: str | None) -> None:
    """Ping every overlay address from every member; exit 1 when any pair fails."""
    if not _print_pings(_open(lab_id), retry_for=0):
        raise click.exceptions.Exit(1)


# Everything after its own options (from the first argument or unknown option on) is the
# inner command's, untouched: `lab cli -- node list -o json`, or even without the `--`.
@lab.command("cli", context_settings={"ignore_unknown_options": True,
                                      "allow_interspersed_args": False})
@lab_id_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def cli(ctx: click.Context, lab_id: str | None, args: tuple[str, ...]) -> None:
    """Run `nimbus ARGS…` as the lab admin inside the control plane's namespace.

    Exits with the inner command's exit code. A token (`--token` or NIMBUS_TOKEN) is passed
    on, so the command runs as that token's user instead of the lab admin.
    """
    if not args:
        raise click.UsageError("give the nimbus command to run, e.g. "
                                   "`nimbus lab cli -- node list`", ctx)
    the_lab = _open(lab_id)
    argv, env = the_lab.cli_argv(list(args))
    from nimbus.cli.context import bearer_token

    token = bearer_token(ctx)
    if token:
        env["NIMBUS_TOKEN"] = token
    raise click.exceptions.Exit(subprocess.call(argv, env=env))


@lab.command("restart")
@lab_id_option
@click.argument("member")
def restart(lab_id: str | None, member: str) -> None:
    """Restart the control plane (`cp`) or the agent of node N, keeping their data."""
    the_lab = _open(lab_id)
    the_lab.restart(member.removeprefix("n") if member != "cp" else member)
    click.echo(f"restarted {member} in lab {the_lab.id}")


@lab.command("down")
@lab_id_option
@click.option("--all", "all_labs_", is_flag=True, help="Remove every lab on this machine.")
def down(lab_id: str | None, all_labs_: bool) -> None:
    """Stop every lab process; remove namespaces, interfaces, sockets and lab files."""
    from nimbus.lab.orchestrate import Lab, all_labs, check_requirements, resolve_id

    check_requirements()
    ids = all_labs() if all_labs_ else [resolve_id(lab_id)]
    for i in ids:
        Lab(i).down()
        click.echo(f"lab {i} removed")
    if not ids:
        click.echo("no labs")
