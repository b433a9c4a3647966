"""Declaring the CLI's commands, parsing argv into them, and rendering their help.

Commands are declared with decorators in the style of click (`@group`, `@command`,
`@option`, `@argument`, `@pass_context`), so a command module reads like a click one. It is
our own small module because every `nimbus` invocation pays for its imports: click (with
typing, inspect, enum, gettext…) cost more than half of `nimbus node list`'s wall time
(issue 12: `--help` <= 35 ms, `node list` <= 40 ms). This module imports only `os` and
`sys`; subcommands of the root are imported only when run (see `Group.lazy`).

What it understands — exactly what Nimbus's commands use, nothing more:
* options: `--long`, `-s`, `--long=value`, `-svalue`; flags; `required`, `default`,
  `envvar` (used when the option is absent), `choices`-style types (Choice, IntRange,
  Path), `hidden`, `show_default`, `metavar`; the last occurrence wins;
* arguments: one value, or all the remaining ones (`nargs=-1`);
* `--` ends the options; `-h`/`--help` prints the help and exits 0 wherever it appears among
  a command's options;
* groups: options, then a subcommand name; `invoke_without_command` runs the group's own
  callback when no subcommand follows, otherwise a missing subcommand shows the help;
* `passthrough` commands (`nimbus lab cli -- …`): their options end at the first argument
  or unknown option, everything after goes to their `nargs=-1` argument untouched.
Mistakes raise UsageError (exit code 2); the caller prints it as one line.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

HELP_NAMES = ("-h", "--help")
MAX_WIDTH = 80


class UsageError(Exception):
    """The command line is wrong: shown as one line with a pointer to --help; exit code 2."""

    exit_code = 2

    def __init__(self, message: str, ctx: Context | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ctx = ctx


class Exit(Exception):
    """Leave with this exit code, nothing printed (`raise Exit(1)` in a command)."""

    def __init__(self, code: int = 0) -> None:
        super().__init__(code)
        self.exit_code = code


class Abort(Exception):
    """The user cancelled a prompt (Ctrl-C, end of input)."""


# ---- value types -----------------------------------------------------------------------


class Choice:
    def __init__(self, choices: Sequence[str]) -> None:
        self.choices = tuple(choices)
        self.metavar = "[" + "|".join(self.choices) + "]"

    def convert(self, value: str) -> str:
        if value not in self.choices:
            raise ValueError(f"{value!r} is not one of " + ", ".join(map(repr, self.choices)))
        return value


class IntRange:
    metavar = "INTEGER"

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.metavar = f"INTEGER RANGE ({low}-{high})"

    def convert(self, value: str) -> int:
        try:
            number = int(value, 10)
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
        if not self.low <= number <= self.high:
            raise ValueError(f"{number} is not in the range {self.low} to {self.high}")
        return number


class Path:
    """A file path, checked only as far as asked: `exists`, and `dir_okay=False`."""

    metavar = "PATH"

    def __init__(self, exists: bool = False, dir_okay: bool = True) -> None:
        self.exists, self.dir_okay = exists, dir_okay
        self.metavar = "FILE" if not dir_okay else "PATH"

    def convert(self, value: str) -> str:
        if not value:
            raise ValueError("an empty path")
        if self.exists and not os.path.exists(value):
            raise ValueError(f"{value!r} does not exist")
        if not self.dir_okay and os.path.isdir(value):
            raise ValueError(f"{value!r} is a directory")
        return value


class _Text:
    metavar = "TEXT"

    @staticmethod
    def convert(value: str) -> str:
        return value


# ---- parameters --------------------------------------------------------------------------


class Option:
    def __init__(self, decls: Sequence[str], *, is_flag: bool = False, default: Any = None,
                 required: bool = False, help: str = "", envvar: str | None = None,
                 metavar: str | None = None, type: Any = None, show_default: bool = False,
                 hidden: bool = False) -> None:
        self.opts = [d for d in decls if d.startswith("-")]
        names = [d for d in decls if not d.startswith("-")]
        longest = max(self.opts, key=len)
        self.dest = names[0] if names else longest.lstrip("-").replace("-", "_")
        self.is_flag, self.required, self.help, self.envvar = is_flag, required, help, envvar
        self.default = False if is_flag and default is None else default
        self.type = type or _Text
        self.metavar = metavar or self.type.metavar
        self.show_default, self.hidden = show_default, hidden

    @property
    def label(self) -> str:
        return " / ".join(repr(o) for o in self.opts)

    def convert(self, value: str, ctx: Context) -> Any:
        try:
            return self.type.convert(value)
        except ValueError as exc:
            raise UsageError(f"invalid value for {self.label}: {exc}", ctx) from None

    def final(self, given: dict[str, Any], ctx: Context) -> Any:
        """The value: given on the command line, else from the environment, else default."""
        if self.dest in given:
            value = given[self.dest]
            return value if self.is_flag else self.convert(value, ctx)
        if self.envvar and os.environ.get(self.envvar):
            value = os.environ[self.envvar]
            if self.is_flag:
                return value.lower() in ("1", "true", "yes", "on")
            return self.convert(value, ctx)
        if self.required:
            raise UsageError(f"missing option {self.opts[-1]!r}", ctx)
        return self.default

    def help_row(self) -> tuple[str, str]:
        names = ", ".join(sorted(self.opts, key=len))
        if not self.is_flag:
            names += f" {self.metavar}"
        text = self.help
        if self.show_default and self.default is not None:
            text += f"  [default: {self.default}]"
        if self.required:
            text += "  [required]"
        return names, text.strip()


class Argument:
    def __init__(self, dest: str, metavar: str | None = None, nargs: int = 1) -> None:
        self.dest, self.nargs = dest, nargs
        self.metavar = metavar or dest.upper()

    @property
    def usage(self) -> str:
        return f"[{self.metavar}]..." if self.nargs == -1 else self.metavar


_HELP_OPTION = Option(HELP_NAMES, is_flag=True, help="Show this message and exit.")


# ---- commands ----------------------------------------------------------------------------


class Context:
    """One command being run: its name, its parent's context, the shared `obj`."""

    def __init__(self, command: Command, name: str, parent: Context | None = None,
                 obj: Any = None) -> None:
        self.command, self.info_name, self.parent = command, name, parent
        self.obj = obj if obj is not None or parent is None else parent.obj
        self.params: dict[str, Any] = {}
        self.invoked_subcommand: str | None = None

    @property
    def command_path(self) -> str:
        return f"{self.parent.command_path} {self.info_name}" if self.parent else self.info_name

    def find_root(self) -> Context:
        ctx = self
        while ctx.parent is not None:
            ctx = ctx.parent
        return ctx

    def ensure_object(self, kind: type) -> Any:
        if self.obj is None:
            self.obj = kind()
            self.find_root().obj = self.obj
        return self.obj


class Command:
    def __init__(self, name: str, callback: Callable[..., Any] | None, params: list[Any],
                 doc: str | None, pass_ctx: bool = False, passthrough: bool = False,
                 hidden: bool = False) -> None:
        self.name, self.callback, self.pass_ctx = name, callback, pass_ctx
        self.params = params
        self.options = [p for p in params if isinstance(p, Option)]
        self.arguments = [p for p in params if isinstance(p, Argument)]
        self.doc = _dedent(doc or "")
        self.passthrough, self.hidden = passthrough, hidden

    @property
    def short_help(self) -> str:
        return self.doc.split("\n\n")[0].replace("\n", " ").strip()

    def _find(self, token: str) -> Option | None:
        for opt in self.options:
            if token in opt.opts:
                return opt
        return None

    def parse(self, ctx: Context, args: list[str], stop_at_positional: bool) -> list[str]:
        """Fill ctx.params from args; return what follows (positional arguments)."""
        given: dict[str, Any] = {}
        rest: list[str] = []
        i = 0
        while i < len(args):
            word = args[i]
            i += 1
            if word == "--":
                rest += args[i:]
                break
            if not word.startswith("-") or word == "-":
                rest.append(word)
                if stop_at_positional or self.passthrough:
                    rest += args[i:]
                    break
                continue
            if word in HELP_NAMES:
                echo(self.help_text(ctx))
                raise Exit(0)
            name, eq, inline = word.partition("=") if word.startswith("--") else (
                word[:2], "", word[2:])
            inline_given = bool(eq) or bool(inline)
            opt = self._find(name)
            if opt is None:
                if self.passthrough:
                    rest += args[i - 1:]
                    break
                raise UsageError(f"no such option: {name}", ctx)
            if opt.is_flag:
                if inline_given:
                    raise UsageError(f"option {name} does not take a value", ctx)
                given[opt.dest] = True
                continue
            if inline_given:
                value = inline
            elif i < len(args):
                value, i = args[i], i + 1
            else:
                raise UsageError(f"option {name} requires a value", ctx)
            given[opt.dest] = value  # converted once all are read: --help wins
        for opt in self.options:
            ctx.params[opt.dest] = opt.final(given, ctx)
        return rest

    def bind_arguments(self, ctx: Context, values: list[str]) -> None:
        for arg in self.arguments:
            if arg.nargs == -1:
                ctx.params[arg.dest], values = tuple(values), []
            elif values:
                ctx.params[arg.dest], values = values[0], values[1:]
            else:
                raise UsageError(f"missing argument {arg.metavar!r}", ctx)
        if values:
            raise UsageError(f"unexpected extra argument{'s' if len(values) > 1 else ''} "
                             f"({' '.join(values)})", ctx)

    def invoke(self, ctx: Context, args: list[str]) -> Any:
        self.bind_arguments(ctx, self.parse(ctx, args, stop_at_positional=False))
        return self.call(ctx)

    def call(self, ctx: Context) -> Any:
        if self.callback is None:
            return None
        if self.pass_ctx:
            return self.callback(ctx, **ctx.params)
        return self.callback(**ctx.params)

    # help
    def usage(self, ctx: Context) -> str:
        parts = [ctx.command_path, "[OPTIONS]", *(a.usage for a in self.arguments)]
        return "Usage: " + " ".join(parts)

    def help_text(self, ctx: Context) -> str:
        width = _width()
        out = [self.usage(ctx), ""]
        for paragraph in self.doc.split("\n\n") if self.doc else []:
            out += [*_wrap(paragraph.replace("\n", " "), width, "  "), ""]
        rows = [o.help_row() for o in [*self.options, _HELP_OPTION] if not o.hidden]
        out += ["Options:", *_table(rows, width)]
        out += self.extra_help(width)
        return "\n".join(out)

    def extra_help(self, width: int) -> list[str]:
        return []


class Group(Command):
    """A command made of subcommands; `lazy` maps names to (module, attribute, short help)
    imported only when that subcommand runs."""

    def __init__(self, *args: Any, invoke_without_command: bool = False,
                 lazy: dict[str, tuple[str, str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invoke_without_command = invoke_without_command
        self.commands: dict[str, Command] = {}
        self.lazy = lazy or {}

    def command(self, name: str | None = None, *, passthrough: bool = False,
                hidden: bool = False) -> Callable[[Callable[..., Any]], Command]:
        def decorate(fn: Callable[..., Any]) -> Command:
            cmd = _make(Command, fn, name, passthrough=passthrough, hidden=hidden)
            self.commands[cmd.name] = cmd
            return cmd
        return decorate

    def list_commands(self) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, name: str) -> Command | None:
        if name in self.commands:
            return self.commands[name]
        if name in self.lazy:
            import importlib

            module, attr, _ = self.lazy[name]
            return getattr(importlib.import_module(module), attr)
        return None

    def short_help_of(self, name: str) -> str:
        if name in self.lazy:
            return self.lazy[name][2]
        return self.commands[name].short_help

    def usage(self, ctx: Context) -> str:
        return f"Usage: {ctx.command_path} [OPTIONS] COMMAND [ARGS]..."

    def extra_help(self, width: int) -> list[str]:
        rows = [(n, self.short_help_of(n)) for n in self.list_commands()
                if not (n in self.commands and self.commands[n].hidden)]
        return ["", "Commands:", *_table(rows, width)]

    def invoke(self, ctx: Context, args: list[str]) -> Any:
        rest = self.parse(ctx, args, stop_at_positional=True)
        if not rest:
            if self.invoke_without_command:
                return self.call(ctx)
            raise ShowHelp(ctx)
        name, rest = rest[0], rest[1:]
        sub = self.get_command(name)
        if sub is None:
            raise UsageError(f"no such command {name!r}", ctx)
        ctx.invoked_subcommand = name
        self.call(ctx)
        return sub.invoke(Context(sub, name, parent=ctx), rest)

    def main(self, args: list[str], prog_name: str, obj: Any = None) -> Any:
        """Parse and run; returns the command's return value, raises Exit/UsageError."""
        return self.invoke(Context(self, prog_name, obj=obj), list(args))


class ShowHelp(UsageError):
    """A group was run without a subcommand: its help is the answer (on stderr, exit 2)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(f"missing a command; see `{ctx.command_path} --help`", ctx)
        self.text = ctx.command.help_text(ctx)


# ---- decorators --------------------------------------------------------------------------


def _params_of(fn: Callable[..., Any]) -> list[Any]:
    if not hasattr(fn, "__nimbus_params__"):
        fn.__nimbus_params__ = []  # type: ignore[attr-defined]
    return fn.__nimbus_params__  # type: ignore[attr-defined]


def _make(cls: type, fn: Callable[..., Any], name: str | None, **kwargs: Any) -> Any:
    params = list(reversed(_params_of(fn)))  # decorators apply bottom-up
    return cls(name or fn.__name__.replace("_", "-"), fn, params, fn.__doc__,
               pass_ctx=getattr(fn, "__nimbus_pass_ctx__", False), **kwargs)


def command(name: str | None = None, *, passthrough: bool = False,
            ) -> Callable[[Callable[..., Any]], Command]:
    return lambda fn: _make(Command, fn, name, passthrough=passthrough)


def group(name: str | None = None, *, invoke_without_command: bool = False,
          lazy: dict[str, tuple[str, str, str]] | None = None,
          ) -> Callable[[Callable[..., Any]], Group]:
    return lambda fn: _make(Group, fn, name, invoke_without_command=invoke_without_command,
                            lazy=lazy)


def option(*decls: str, **kwargs: Any) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        _params_of(fn).append(Option(decls, **kwargs))
        return fn
    return decorate


def argument(dest: str, *, metavar: str | None = None, nargs: int = 1) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        _params_of(fn).append(Argument(dest, metavar, nargs))
        return fn
    return decorate


def pass_context(fn: F) -> F:
    fn.__nimbus_pass_ctx__ = True  # type: ignore[attr-defined]
    return fn


# ---- terminal I/O ------------------------------------------------------------------------


def echo(text: str = "", err: bool = False, nl: bool = True) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + ("\n" if nl else ""))
    stream.flush()


def prompt(label: str, hide_input: bool = True, confirmation_prompt: bool = False) -> str:
    """A value typed on the terminal (not echoed); asked twice with confirmation_prompt."""
    import getpass

    try:
        while True:
            value = getpass.getpass(f"{label}: ")
            if not confirmation_prompt or getpass.getpass("Repeat for confirmation: ") == value:
                return value
            echo("error: the two entered values do not match", err=True)
    except (KeyboardInterrupt, EOFError):
        raise Abort from None


def confirm(question: str, default: bool = False, err: bool = True) -> bool:
    """A yes/no answer from stdin; the question goes to stderr (stdout may be a pipe)."""
    hint = " [Y/n]: " if default else " [y/N]: "
    while True:
        echo(question + hint, err=err, nl=False)
        line = sys.stdin.readline()
        if not line:
            raise Abort
        answer = line.strip().lower()
        if not answer:
            return default
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no"):
            return False


# ---- text layout -------------------------------------------------------------------------


def _width() -> int:
    try:
        columns = os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return MAX_WIDTH
    return max(40, min(columns, MAX_WIDTH))


def _dedent(doc: str) -> str:
    lines = doc.expandtabs().strip("\n").splitlines()
    if not lines:
        return ""
    indents = [len(ln) - len(ln.lstrip()) for ln in lines[1:] if ln.strip()]
    cut = min(indents, default=0)
    return "\n".join([lines[0].strip(), *(ln[cut:].rstrip() for ln in lines[1:])]).strip()


def _wrap(text: str, width: int, indent: str) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(indent) + len(line) + 1 + len(word) > width:
            lines.append(indent + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, indent + line] if line else lines


def _table(rows: list[tuple[str, str]], width: int) -> list[str]:
    """Two columns, the second wrapped beside the first (or below it when the first is long)."""
    first = min(max((len(a) for a, _ in rows), default=0), 30)
    out: list[str] = []
    for name, text in rows:
        lead = f"  {name}"
        wrapped = _wrap(text, width, " " * (first + 4)) or [""]
        if len(name) > first:
            out += [lead, *wrapped] if text else [lead]
        else:
            out.append(lead.ljust(first + 4) + wrapped[0].lstrip())
            out += wrapped[1:]
    return out
