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
TASK_COLUMNS = ["service", "replica", "node", "desired", "state", "error", "since"]


@click.group()
def service() -> None:
    """Compose stacks on a swarm: deploy, list, describe, logs, scale, stop, start, remove."""


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
              type=click.Path(dir_okay=False, allow_dash=True),
                  help="Compose file (YAML or JSON; - = stdin).")
@click.option("--name", required=True, help="Stack name: 1-63 of a-z, 0-9, '_' and '-'.")
@click.option("--env", "env_pairs", multiple=True, metavar="KEY=VALUE",
              help="Value of ${KEY} in the compose file (repeatable). Other local users "
                   "see it in ps: give secrets with --env-file.")
@click.option("--env-file", "env_file", default=None, metavar="FILE",
              help="A dotenv file of KEY=VALUE lines (- = stdin); --env wins over it.")
@click.option("--allow-privileged", is_flag=True,
              help="Accept containers that reach into their nodes (privileged, host "
                   "namespaces, mounts of / or the Docker socket; see docs/workloads.md).")
@click.option("--volume", "volumes", multiple=True, metavar="COMPOSE_VOLUME=VOLUME",
              help="Map a volume the compose file declares onto an NFS volume of the swarm "
                   "(the external Docker volume nimbus-VOLUME); repeatable.")
@output_option
@click.pass_context
def deploy(ctx: click.Context, swarm_ref: str, path: str, name: str,
           env_pairs: tuple[str, ...], env_file: str | None, allow_privileged: bool,
           volumes: tuple[str, ...], fmt: str) -> None:
    """Deploy (or update) a compose stack on the swarm's manager.

    ${KEY} in the file is substituted by the control plane from --env/--env-file (kept
    sealed and re-used by later deploys, scale, stop and start).
    """
    if path == "-" and env_file == "-":
        raise click.BadParameter("the compose file and the env file cannot both be stdin",
                                 param_hint="--env-file")
    body: dict[str, Any] = {"name": name, "swarm": swarm_ref, "compose": load_compose(path)}
    env = load_env(env_pairs, env_file)
    if env:
        body["env"] = env
    if allow_privileged:
        body["allow_privileged"] = True
    if volumes:
        body["volumes"] = volume_map(volumes)
    _show(api(ctx, timeout=150).request("POST", "/v1/services", body), fmt)


def volume_map(pairs: tuple[str, ...]) -> dict[str, str]:
    """`db=data` pairs as {"db": "data"}; the server checks both names."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise click.BadParameter(f"{pair!r} is not COMPOSE_VOLUME=VOLUME",
                                     param_hint="--volume")
        if key in out:
            raise click.BadParameter(f"{key!r} is mapped twice", param_hint="--volume")
        out[key] = value
    return out


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
    """Show a stack's services and every task as the swarm manager reports them."""
    from nimbus.cli import agentread

    data = agentread.fresh(api(ctx), f"/v1/services/{_seg(name)}")
    _show(data, fmt)
    if fmt != "json":
        click.echo("")
        emit(data.get("tasks", []), fmt, TASK_COLUMNS)


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


def load_env(pairs: tuple[str, ...], env_file: str | None) -> dict[str, str]:
    """The env of a deploy: the file's values, then --env's (one-line errors, never a
    value in them)."""
    from nimbus.docker import envsubst

    env: dict[str, str] = {}
    try:
        if env_file:
            try:
                text = Path(env_file).read_text() if env_file != "-" else sys.stdin.read()
            except OSError as exc:
                raise ConfigError(f"reading {env_file}: {exc.strerror or exc}") from None
            env.update(envsubst.parse_dotenv(text, env_file))
        for pair in pairs:
            key, value = envsubst.parse_assignment(pair)
            env[key] = value
    except envsubst.EnvError as exc:
        raise click.BadParameter(str(exc), param_hint="--env") from None
    return env


@service.command("logs")
@click.argument("name", shell_complete=complete_service)
@click.option("--service", "svc", default=None, help="Only this service of the stack.")
@click.option("--tail", type=click.IntRange(0, 10000), default=100, show_default=True,
              help="Lines from the end of each task's log.")
@click.option("--since", default=None,
              help="Only newer lines: 30s, 10m, 2h, 1d, unix seconds or RFC 3339 UTC.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--timestamps", "-t", is_flag=True, help="Show each line's time.")
@output_option
@click.pass_context
def logs(ctx: click.Context, name: str, svc: str | None, tail: int, since: str | None,
         follow: bool, timestamps: bool, fmt: str) -> None:
    """Print the containers' output (stdout and stderr) of the stack's services.

    Each line reads `service.replica@node | text`; -o json prints one JSON object a line.
    """
    from nimbus.cli import agentread

    body: dict[str, Any] = {"tail": tail, "follow": follow}
    if svc:
        body["service"] = svc
    if since:
        body["since"] = since
    agentread.read(api(ctx), f"/v1/services/{_seg(name)}/logs", body, follow,
                   agentread.stack_line(timestamps, fmt))


@service.command("scale")
@click.argument("name", shell_complete=complete_service)
@click.argument("counts", nargs=-1, required=True, metavar="SERVICE=REPLICAS...")
@output_option
@click.pass_context
def scale(ctx: click.Context, name: str, counts: tuple[str, ...], fmt: str) -> None:
    """Set replica counts (kept across stop/start; a new deploy takes the file's)."""
    from nimbus.docker import replicas

    try:
        wanted = replicas.parse(counts)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SERVICE=REPLICAS") from None
    _show(api(ctx, timeout=150).request("POST", f"/v1/services/{_seg(name)}/scale",
                                        {"replicas": wanted}), fmt)


@service.command("stop")
@click.argument("name", shell_complete=complete_service)
@output_option
@click.pass_context
def stop(ctx: click.Context, name: str, fmt: str) -> None:
    """Every service to 0 replicas; the stack and its configuration stay."""
    _show(api(ctx, timeout=150).request("POST", f"/v1/services/{_seg(name)}/stop", {}), fmt)


@service.command("start")
@click.argument("name", shell_complete=complete_service)
@output_option
@click.pass_context
def start(ctx: click.Context, name: str, fmt: str) -> None:
    """Bring a stopped stack back to its declared (or scaled) replicas."""
    _show(api(ctx, timeout=150).request("POST", f"/v1/services/{_seg(name)}/start", {}), fmt)


def _show(data: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        emit(data, fmt)
        return
    emit(data, fmt, ["name", "swarm", "running", "desired", "status"])
    click.echo("")
    emit(data.get("services", []), fmt, ["name", "image", "running", "desired"])

