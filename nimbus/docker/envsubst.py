"""Compose variable substitution done by the control plane, and dotenv parsing (pure).

`docker stack deploy` interpolates `${VAR}` from the environment of the process that runs
it, which on a manager node is whatever the agent happens to have. Nimbus substitutes
instead, from the values the operator gave at deploy time, with compose's syntax:
`$KEY`, `${KEY}`, `${KEY:-default}`, `${KEY-default}`, `${KEY:?error}`, `${KEY?error}`,
`${KEY:+alt}`, `${KEY+alt}` (defaults may nest) and `$$` for a literal `$`. Every `$` of
the result is escaped again as `$$`, so Docker's own pass on the manager yields exactly
the substituted text and never reads the agent's environment.
SECURITY: values are often passwords: no error message here ever contains one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_KEYS = 256
MAX_VALUE = 64 * 1024
MAX_TOTAL = 256 * 1024
_OPS = (":-", ":?", ":+", "-", "?", "+")


class EnvError(ValueError):
    """A substitution or an env value the control plane refuses (one readable sentence)."""


def check_env(env: Mapping[str, Any]) -> dict[str, str]:
    """The env as {str: str}; EnvError naming the key (never the value) when one is bad."""
    if not isinstance(env, Mapping):
        raise EnvError("env must be a mapping of KEY to VALUE")
    if len(env) > MAX_KEYS:
        raise EnvError(f"at most {MAX_KEYS} env keys")
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not NAME_RE.fullmatch(key) or len(key) > 128:
            raise EnvError(f"env key {str(key)[:64]!r} is not a name (letters, digits and _, "
                           "not starting with a digit)")
        if not isinstance(value, str) or "\x00" in value or len(value) > MAX_VALUE:
            raise EnvError(f"env value of {key} must be text of at most {MAX_VALUE // 1024} "
                           "KiB without NUL bytes")
        out[key] = value
    if sum(len(k) + len(v) for k, v in out.items()) > MAX_TOTAL:
        raise EnvError(f"the env values add up to more than {MAX_TOTAL // 1024} KiB")
    return out


def parse_assignment(text: str, where: str = "--env") -> tuple[str, str]:
    """'KEY=VALUE' -> (KEY, VALUE); EnvError that shows the key only."""
    key, sep, value = text.partition("=")
    if not sep:  # the whole argument may be a secret: it is not shown
        raise EnvError(f"{where} expects KEY=VALUE (no '=' found)")
    if not NAME_RE.fullmatch(key):
        raise EnvError(f"{where}: {key[:64]!r} is not a variable name (letters, digits and "
                       "_, not starting with a digit)")
    return key, value


def parse_dotenv(text: str, where: str = "env file") -> dict[str, str]:
    """A dotenv file: KEY=VALUE lines, `export` allowed, # comments, '…' and "…" quoting."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key, value = parse_assignment(key.strip() + sep + value, f"{where} line {number}")
        out[key] = _dotenv_value(value.strip(), f"{where} line {number}")
    return out


def _dotenv_value(value: str, where: str) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        while quote == '"' and end > 0 and value[end - 1] == "\\":
            end = value.find(quote, end + 1)
        if end < 0:
            raise EnvError(f"{where}: the quoted value is not closed")
        inner = value[1:end]
        if quote == '"':
            inner = (inner.replace("\\n", "\n").replace('\\"', '"')
                     .replace("\\\\", "\\"))
        return inner
    return re.split(r"\s+#", value, maxsplit=1)[0].rstrip()


# -- substitution ---------------------------------------------------------------------------

def substitute(text: str, env: Mapping[str, str], missing: set[str] | None = None) -> str:
    """The text with variables replaced and `$$` made `$`. Unset keys without a default are
    added to `missing` when given (so every missing key is named at once), else raised."""
    out: list[str] = []
    i = 0
    while True:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        i = _one(text, j, env, missing, out)


def _one(text: str, j: int, env: Mapping[str, str], missing: set[str] | None,
         out: list[str]) -> int:
    """Substitute the `$…` at text[j]; returns where to go on."""
    nxt = text[j + 1:j + 2]
    if nxt == "$":
        out.append("$")
        return j + 2
    if nxt == "{":
        end = _closing(text, j + 2)
        out.append(_braced(text[j + 2:end], env, missing))
        return end + 1
    m = NAME_RE.match(text, j + 1)
    if not m:
        raise EnvError("a '$' not followed by a name or '{': write $$ for a literal $")
    out.append(_lookup(m.group(), env, missing))
    return m.end()


def _closing(text: str, start: int) -> int:
    """Index of the '}' closing a '${' whose body starts at `start` (nested '${' count)."""
    depth, i = 1, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise EnvError("a '${' is not closed by '}'")


def _braced(body: str, env: Mapping[str, str], missing: set[str] | None) -> str:
    m = NAME_RE.match(body)
    if not m:
        raise EnvError(f"${{{body[:40]}}} does not start with a variable name")
    name, rest = m.group(), body[m.end():]
    if not rest:
        return _lookup(name, env, missing)
    op = next((o for o in _OPS if rest.startswith(o)), None)
    if op is None:
        raise EnvError(f"${{{name}…}}: unknown modifier (use :-, -, :?, ?, :+ or +)")
    arg = rest[len(op):]
    value = env.get(name)
    present = value is not None and (value != "" or ":" not in op)
    if op.endswith("-"):
        return value if present else substitute(arg, env, missing)  # type: ignore[return-value]
    if op.endswith("+"):
        return substitute(arg, env, missing) if present else ""
    if not present:  # ? and :?
        raise EnvError(f"{name} is required: {arg[:200] or 'it is not set'}")
    return value  # type: ignore[return-value]


def _lookup(name: str, env: Mapping[str, str], missing: set[str] | None) -> str:
    value = env.get(name)
    if value is not None:
        return value
    if missing is None:
        raise EnvError(_missing_message({name}))
    missing.add(name)
    return ""


def _missing_message(names: set[str]) -> str:
    first = sorted(names)[0]
    listed = ", ".join(sorted(names)[:10])
    return (f"the compose file uses {listed} but {'it is' if len(names) == 1 else 'they are'}"
            f" not set: pass --env {first}=VALUE or --env-file FILE (or give a default, "
            f"${{{first}:-default}})")


def interpolate(compose: Any, env: Mapping[str, str]) -> Any:
    """A copy of the compose structure with every string value substituted and re-escaped
    for Docker's own interpolation pass ($ -> $$). EnvError names every unset key."""
    missing: set[str] = set()
    out = _walk(compose, env, missing)
    if missing:
        raise EnvError(_missing_message(missing))
    return out


def _walk(node: Any, env: Mapping[str, str], missing: set[str]) -> Any:
    if isinstance(node, str):
        return substitute(node, env, missing).replace("$", "$$")
    if isinstance(node, dict):
        return {k: _walk(v, env, missing) for k, v in node.items()}  # keys are not expanded
    if isinstance(node, list):
        return [_walk(v, env, missing) for v in node]
    return node


def redact(text: str, env: Mapping[str, str], min_len: int = 4) -> str:
    """SECURITY: the text with every env value of at least min_len characters masked (an
    error message of Docker may echo a substituted value back)."""
    for value in sorted((v for v in env.values() if len(v) >= min_len), key=len,
                        reverse=True):
        text = text.replace(value, "***")
    return text
