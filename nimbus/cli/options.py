"""Options a group shares with its subcommands (`serve --config F install`), honoured or refused."""

from __future__ import annotations

import click

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def inherited(ctx: click.Context, **own: Any) -> dict[str, Any]:
    """The subcommand's own option values, each falling back to the group's same option.

    `nimbus serve --config F install` and `serve install --config F` mean the same. Given on
    the command line to both with different values (`serve --config A install --config B`)
    is refused rather than one of them silently winning. Flags count as given when set.
    """
    from click.core import ParameterSource

    parent = ctx.parent
    assert parent is not None
    merged: dict[str, Any] = {}
    for name, value in own.items():
        above = parent.params.get(name)
        here = ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        there = parent.get_parameter_source(name) is ParameterSource.COMMANDLINE
        if here and there and above != value:
            raise click.UsageError(f"{flag_of(ctx, name)} given to both "
                                   f"`{parent.command_path}` and `{ctx.command_path}` with "
                                   "different values; give it once", ctx)
        if here or not there:  # typed here, or nowhere: this one's value (default, env)
            merged[name] = value if value not in (None, False) or here else above
        else:
            merged[name] = above
    return merged


def refuse_group_options(ctx: click.Context, names: tuple[str, ...], why: str) -> None:
    """Refuse the group's options (given on the command line) that this subcommand cannot
    honour: `why` says what to do instead."""
    from click.core import ParameterSource

    parent = ctx.parent
    assert parent is not None
    given = [flag_of(parent, n) for n in names
             if parent.get_parameter_source(n) is ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"{', '.join(given)} cannot be used with "
                               f"`{ctx.command_path}`: {why}", ctx)


def flag_of(ctx: click.Context, name: str) -> str:
    """The option's long flag as the user types it (`config_file` -> `--config`)."""
    for param in ctx.command.params:
        if param.name == name:
            return max(param.opts, key=len)
    return name
