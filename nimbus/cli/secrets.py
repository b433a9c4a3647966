"""Reading a secret for the CLI without putting it on the command line.

SECURITY: a flag value sits in shell history and in every user's `ps` output, so it is
accepted with a warning only; the file (`-` = stdin), the environment and a no-echo
prompt are the ways meant to be used. One helper, so every secret flag behaves alike.
"""

from __future__ import annotations

import os
import sys

import click

from nimbus.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any

    F = Callable[..., Any]


def secret_options(name: str, help_text: str, envvar: str | None = None,
                   prompt: bool = True) -> Callable[[F], F]:
    """`--NAME VALUE` and `--NAME-file F|-` options (dest NAME and NAME_file, underscored);
    prompt=False where the secret is never asked for on the terminal."""
    dest = name.replace("-", "_")
    ways = [f"--{name}-file", *([envvar] if envvar else []), *(["the prompt"] if prompt else [])]
    prefer = ", ".join(ways[:-1]) + f" or {ways[-1]}" if len(ways) > 1 else ways[0]

    def decorate(fn: F) -> F:
        fn = click.option(f"--{name}-file", f"{dest}_file", default=None, metavar="FILE|-",
                          type=click.Path(dir_okay=False, allow_dash=True),
                          help=f"Read the {help_text} from FILE, or - for stdin.")(fn)
        return click.option(f"--{name}", dest, default=None, metavar="VALUE",
                            help=f"The {help_text} (visible in ps and shell history: prefer "
                                 f"{prefer}).")(fn)
    return decorate


def current_password_options(f: F) -> F:
    """--current-password-file (or NIMBUS_CURRENT_PASSWORD, or the prompt) for a command
    that mints lasting access: the server wants it when the caller uses a token."""
    return secret_options("current-password", "caller's current password (needed with --token)",
                          envvar="NIMBUS_CURRENT_PASSWORD")(f)


def read_secret(label: str, *, flag: str, value: str | None = None,
                file: str | None = None, envvar: str | None = None, confirm: bool = False,
                prompt: bool = True, stdin: IO[str] | None = None,
                env: dict[str, str] | None = None) -> str:
    """The secret from (in order) the flag value, `--X-file F|-`, envvar, or a no-echo prompt.

    `flag` is the option's name (e.g. "--password") for messages. A flag value works but
    prints a one-line warning to stderr. Without any of them and without a terminal to
    prompt on, raises ConfigError saying which ways there are. Never echoes the secret.
    """
    env = os.environ if env is None else env
    if value is not None and file is not None:
        raise ConfigError(f"give either {flag} or {flag}-file, not both")
    if value is not None:
        click.echo(f"warning: {flag} on the command line is visible in ps and shell history; "
                   f"use {flag}-file, {envvar + ', ' if envvar else ''}or the prompt",
                   err=True)
        return _non_empty(value, label)
    if file is not None:
        return _non_empty(_read_file(file, stdin, flag), label)
    if envvar and env.get(envvar):
        return _non_empty(env[envvar], label)
    stream = stdin or sys.stdin
    if prompt and _is_tty(stream):
        return _non_empty(_ask(label, confirm), label)
    ways = f"{flag}-file FILE (- for stdin)" + (f", {envvar}" if envvar else "")
    raise ConfigError(f"{label} needed: give {ways}, or run on a terminal to be prompted")


def _ask(label: str, confirm: bool) -> str:
    """A no-echo prompt on the terminal, asked twice with `confirm`.

    getpass itself, not click.prompt: getpass turns echo off before it writes its prompt,
    while click.prompt writes the prompt first and then calls getpass, so an answer typed
    (or pasted) as soon as the prompt showed was echoed on the screen and then discarded by
    getpass's TCSAFLUSH, leaving the prompt waiting.
    """
    import getpass

    try:
        while True:
            value = getpass.getpass(f"{label}: ")
            if not confirm or getpass.getpass("Repeat for confirmation: ") == value:
                return value
            click.echo("error: the two entered values do not match", err=True)
    except (KeyboardInterrupt, EOFError):
        raise click.Abort from None


def _read_file(path: str, stdin: IO[str] | None, flag: str) -> str:
    if path == "-":
        text = (stdin or sys.stdin).readline()
    else:
        try:
            with open(path) as f:  # not pathlib: every command imports this module
                text = f.read().splitlines()[0] if os.fstat(f.fileno()).st_size else ""
        except IndexError:
            text = ""
        except OSError as exc:
            raise ConfigError(f"{flag}-file {path}: {exc.strerror or exc}") from None
    return text.rstrip("\r\n")


def _non_empty(text: str, label: str) -> str:
    if not text.strip():
        raise ConfigError(f"{label} is empty")
    return text


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
