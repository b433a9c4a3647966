"""`nimbus completion bash|zsh|fish`: the shell script that makes TAB complete nimbus commands."""

from __future__ import annotations

import click

PROG_NAME = "nimbus"
COMPLETE_VAR = "_NIMBUS_COMPLETE"  # what the scripts set; click's name for prog "nimbus"


@click.command()
@click.argument("shell", metavar="SHELL", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL; commands, options, and node, swarm and
    service names (asked from the API, silently skipped when it does not answer) complete.

    \b
    Install it once (then open a new shell):
      bash  nimbus completion bash > ~/.local/share/bash-completion/completions/nimbus
            (needs the bash-completion package; or add to ~/.bashrc:
             eval "$(nimbus completion bash)")
      zsh   nimbus completion zsh > "${fpath[1]}/_nimbus"
            (or add to ~/.zshrc, after compinit: eval "$(nimbus completion zsh)")
      fish  nimbus completion fish > ~/.config/fish/completions/nimbus.fish

    The script calls `nimbus` found on PATH, whatever the file itself is called (e.g. a
    copy of nimbus.pyz installed as /usr/local/bin/nimbus).
    """
    from click.shell_completion import get_completion_class

    script = get_completion_class(shell)
    assert script is not None  # click registers all three
    click.echo(script(ctx.find_root().command, {}, PROG_NAME, COMPLETE_VAR).source())
