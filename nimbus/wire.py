"""Wire types shared by server, agent and CLI: input validation, IDs, the join token."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nimbus.errors import BadRequest

MAX_BODY = 1024 * 1024
WIREGUARD_PORT = 51820  # the default UDP port of every WireGuard interface in the mesh
JOIN_TOKEN_PREFIX = "nimbus-join-v1."  # noqa: S105 - a format prefix, not a secret

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ID_RE = {
    "user": re.compile(r"^user-[0-9a-f]{16}$"),
    "node": re.compile(r"^node-[0-9a-f]{16}$"),
    "task": re.compile(r"^task-[0-9a-f]{16}$"),
    "swarm": re.compile(r"^swarm-[0-9a-f]{16}$"),
    "s3": re.compile(r"^s3-[0-9a-f]{16}$"),
    "key": re.compile(r"^NBUS[0-9A-Z]{16}$"),
}
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def new_id(kind: str) -> str:
    """A random prefixed ID: `user-…`, `node-…`, `task-…`, or an access key `NBUS…`."""
    if kind == "key":
        return "NBUS" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
    return f"{kind}-{secrets.token_hex(8)}"


def control_plane_ip(subnet: str) -> str:
    """The control plane's overlay address: the first host of the subnet (design.md §3.7)."""
    return str(next(ipaddress.ip_network(subnet, strict=False).hosts()))


def check_id(kind: str, value: object) -> str:
    """Return value if it is a well-formed ID of that kind, else raise BadRequest."""
    if not isinstance(value, str) or not ID_RE[kind].fullmatch(value):
        raise BadRequest(f"invalid {kind} id")
    return value


@dataclass(frozen=True)
class Field:
    """One JSON field: its type check and whether it must be present."""

    check: Callable[[str, Any], Any]
    required: bool = False

    @property
    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the value, for the OpenAPI document ({} if undescribed)."""
        return dict(getattr(self.check, "json_schema", {}))


def described(check: Callable[[str, Any], Any], schema: dict[str, Any]) -> Any:
    """Attach the JSON Schema that `check` enforces (read by Field.json_schema)."""
    check.json_schema = schema  # type: ignore[attr-defined]
    return check


def string(max_len: int = 256, pattern: re.Pattern[str] | None = None,
           min_len: int = 1) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be a string")
        if not min_len <= len(value) <= max_len:
            raise BadRequest(f"{name} must be {min_len} to {max_len} characters")
        if any(ord(c) < 32 or ord(c) == 127 for c in value) and pattern is None:
            raise BadRequest(f"{name} must not contain control characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise BadRequest(f"{name} has an invalid format")
        return value
    schema: dict[str, Any] = {"type": "string", "maxLength": max_len}
    if min_len:
        schema["minLength"] = min_len
    if pattern is not None:
        schema["pattern"] = _anchored(pattern.pattern)
    return described(check, schema)


def _anchored(pattern: str) -> str:
    """JSON Schema patterns search; ours fullmatch, so anchor them."""
    return pattern if pattern.startswith("^") else f"^(?:{pattern})$"


def one_of(*values: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in values:
            raise BadRequest(f"{name} must be one of: {', '.join(values)}")
        return value
    return described(check, {"enum": list(values)})


def id_of(kind: str) -> Callable[[str, Any], str]:
    return described(lambda name, value: check_id(kind, value),
                     {"type": "string", "pattern": ID_RE[kind].pattern})


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value


def number(lo: float, hi: float, integer: bool = False) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise BadRequest(f"{name} must be a number")
        if not lo <= value <= hi:
            raise BadRequest(f"{name} must be between {lo:g} and {hi:g}")
        return value
    return described(check, {"type": "integer" if integer else "number", "minimum": lo,
                             "maximum": hi})


# SECURITY: every string a node or a user sends that is stored and printed later gets a
# tight pattern here, so a compromised node cannot plant terminal escapes or forged rows.
# RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
HOSTNAME_RE = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                         r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
VERSION_RE = re.compile(r"[!-~]{1,64}")  # printable ASCII, no spaces
ARCH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
WG_KEY_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")  # base64 of 32 bytes
_IP_CHARS = re.compile(r"[0-9A-Fa-f.:]{2,45}")  # no zone id (`%eth0`), nothing else either


def ip_address(name: str, value: Any) -> str:
    """An IPv4 or IPv6 address in canonical form; IPv6 zone ids are refused."""
    if not isinstance(value, str) or not _IP_CHARS.fullmatch(value):
        raise BadRequest(f"{name} must be an IP address (without a zone id)")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise BadRequest(f"{name} must be an IP address (without a zone id)") from None


# SECURITY: a node's endpoint goes into every other node's WireGuard config, so only an
# address a peer can really send unicast UDP to is accepted. Private ranges stay allowed:
# labs and LANs use them. Checked in order, so the reason named is the most specific one.
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST = ipaddress.ip_address("255.255.255.255")
_NOT_UNICAST: tuple[tuple[str, Callable[[Any], bool]], ...] = (
    ("unspecified", lambda ip: ip.is_unspecified or ip in _THIS_NETWORK),
    ("a loopback address", lambda ip: ip.is_loopback),
    ("a broadcast address", lambda ip: ip == _BROADCAST),
    ("a multicast address", lambda ip: ip.is_multicast),
    ("link-local", lambda ip: ip.is_link_local),
    ("a reserved address", lambda ip: ip.is_reserved or getattr(ip, "is_site_local", False)),
)


def endpoint_problem(address: str) -> str | None:
    """Why `address` cannot be a node's WireGuard endpoint, or None when it can."""
    try:
        ip: Any = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = ip.ipv4_mapped
    return next((why for why, test in _NOT_UNICAST if test(ip)), None)


def endpoint_ip(name: str, value: Any) -> str:
    """ip_address() that must also be a usable unicast endpoint (endpoint_problem)."""
    ip = ip_address(name, value)
    why = endpoint_problem(ip)
    if why:
        raise BadRequest(f"{name} {ip} cannot be a node's endpoint: it is {why}")
    return ip


def wg_public_key(name: str, value: Any) -> str:
    if not isinstance(value, str) or not WG_KEY_RE.fullmatch(value):
        raise BadRequest(f"{name} must be a WireGuard public key (base64, 32 bytes)")
    return value


def is_hostname(value: object) -> bool:
    return isinstance(value, str) and HOSTNAME_RE.fullmatch(value) is not None


def hostname(name: str, value: Any) -> str:
    if not is_hostname(value):
        raise BadRequest(f"{name} must be an RFC 1123 host name")
    return value


def version(name: str, value: Any) -> str:
    if not isinstance(value, str) or not VERSION_RE.fullmatch(value):
        raise BadRequest(f"{name} must be 1 to 64 printable ASCII characters")
    return value


def arch(name: str, value: Any) -> str:
    if not isinstance(value, str) or not ARCH_RE.fullmatch(value):
        raise BadRequest(f"{name} must be a machine architecture like x86_64")
    return value


# What each validator above enforces, as JSON Schema for the OpenAPI document.
described(boolean, {"type": "boolean"})
described(ip_address, {"type": "string", "maxLength": 45,
                       "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]})
described(endpoint_ip, {"type": "string", "maxLength": 45,
                        "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]})
described(hostname, {"type": "string", "maxLength": 253,
                     "pattern": r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                                r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"})
described(version, {"type": "string", "pattern": _anchored(VERSION_RE.pattern)})
described(arch, {"type": "string", "pattern": _anchored(ARCH_RE.pattern)})
described(wg_public_key, {"type": "string", "pattern": _anchored(WG_KEY_RE.pattern)})


TOOL_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
MAX_TOOLS = 16


def tools(name: str, value: Any) -> dict[str, str]:
    """What a node can run for the subsystems, by tool name: {"ganesha": "4.3", "weed": …}."""
    if not isinstance(value, dict) or len(value) > MAX_TOOLS:
        raise BadRequest(f"{name} must be an object of at most {MAX_TOOLS} tool versions")
    for tool, ver in value.items():
        if not isinstance(tool, str) or not TOOL_RE.fullmatch(tool):
            raise BadRequest(f"{name} has an invalid tool name")
        version(f"{name}.{tool}", ver)
    return value


PROCESS_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")  # the agent supervisor's names
PROCESS_STATES = ("running", "backoff", "stopped", "stopping")
MAX_PROCESSES = 256


def processes(name: str, value: Any) -> dict[str, str]:
    """The state of each process the agent supervises, by name: {"s3-….master": "running"}."""
    if not isinstance(value, dict) or len(value) > MAX_PROCESSES:
        raise BadRequest(f"{name} must be an object of at most {MAX_PROCESSES} process states")
    for proc, state in value.items():
        if not isinstance(proc, str) or not PROCESS_RE.fullmatch(proc):
            raise BadRequest(f"{name} has an invalid process name")
        if state not in PROCESS_STATES:
            raise BadRequest(f"{name}.{proc} must be one of: {', '.join(PROCESS_STATES)}")
    return value


described(processes, {"type": "object", "maxProperties": MAX_PROCESSES,
                      "propertyNames": {"pattern": _anchored(PROCESS_RE.pattern)},
                      "additionalProperties": {"enum": list(PROCESS_STATES)}})
described(tools, {"type": "object", "maxProperties": MAX_TOOLS,
                  "propertyNames": {"pattern": _anchored(TOOL_RE.pattern)},
                  "additionalProperties": {"type": "string",
                                           "pattern": _anchored(VERSION_RE.pattern)}})


def obj(schema: dict[str, Field]) -> Callable[[str, Any], dict[str, Any]]:
    def check(name: str, value: Any) -> dict[str, Any]:
        return validate(value, schema, where=name)
    return described(check, json_schema(schema))


def json_schema(schema: dict[str, Field]) -> dict[str, Any]:
    """The JSON Schema of a request shape: unknown fields refused, as `validate` does."""
    out: dict[str, Any] = {"type": "object", "additionalProperties": False,
                           "properties": {k: f.json_schema for k, f in schema.items()}}
    required = [k for k, f in schema.items() if f.required]
    if required:
        out["required"] = required
    return out


def validate(data: Any, schema: dict[str, Field], where: str = "body") -> dict[str, Any]:
    """Check a decoded JSON object against a schema; unknown fields are rejected."""
    if not isinstance(data, dict):
        raise BadRequest(f"{where} must be a JSON object")
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise BadRequest(f"unknown field: {unknown[0][:64]}")
    out: dict[str, Any] = {}
    for key, field in schema.items():
        if key in data:
            out[key] = field.check(key, data[key])
        elif field.required:
            raise BadRequest(f"missing field: {key}")
    return out


MAX_DEPTH = 32


def decode_json(raw: bytes) -> Any:
    """A request body as JSON: at most 1 MiB and MAX_DEPTH levels of nesting."""
    if len(raw) > MAX_BODY:
        from nimbus.errors import PayloadTooLarge
        raise PayloadTooLarge("request body is larger than 1 MiB")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except RecursionError:  # thousands of levels: the parser itself gave up
        raise BadRequest(f"request body is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if _too_deep(data):
        raise BadRequest(f"request body is nested deeper than {MAX_DEPTH} levels")
    return data


def _too_deep(data: Any) -> bool:
    """Iterative, so a deep document cannot exhaust the stack here either."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        elif not isinstance(value, list):
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))
    return False


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


JOIN_TOKEN_FIELDS = (
    "node_id", "secret", "expires_at", "wg_ip", "wg_private_key", "wg_public_key",
    "wg_endpoint", "api_url", "subnet", "ca_pem",
)


def encode_join_token(fields: dict[str, Any]) -> str:
    """`nimbus-join-v1.` + base64url(JSON) — design.md §3.4."""
    body = json.dumps({k: fields[k] for k in JOIN_TOKEN_FIELDS}, separators=(",", ":"))
    return JOIN_TOKEN_PREFIX + b64url_encode(body.encode())


def decode_join_token(token: str) -> dict[str, Any]:
    token = token.strip()
    if not token.startswith(JOIN_TOKEN_PREFIX) or len(token) > 16384:
        raise BadRequest("not a Nimbus join token (expected nimbus-join-v1.…)")
    try:
        data = json.loads(b64url_decode(token[len(JOIN_TOKEN_PREFIX):]))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("join token is corrupted") from None
    if not isinstance(data, dict) or any(k not in data for k in JOIN_TOKEN_FIELDS):
        raise BadRequest("join token is incomplete")
    check_id("node", data["node_id"])
    return data


# The agent <-> control plane contract: one definition per request shape, used by the
# server to validate (server/api/internal.py), by the agent to build (`build`) and by the
# OpenAPI document. A peer is `nimbus.wireguard.config.Peer.to_dict()` plus `node_id` and
# `name`; a task is {"id", "type", "payload"}.
PEM_CSR_RE = re.compile(r"^-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]+"
                        r"-----END CERTIFICATE REQUEST-----\n?$")
CSR = string(8192, PEM_CSR_RE)
_BIG = 2.0**63
_USAGE = {"total": Field(number(0, _BIG)), "used": Field(number(0, _BIG))}
JOIN_REQUEST = {
    "node_id": Field(id_of("node"), required=True),
    "secret": Field(string(128), required=True),
    "csr": Field(CSR, required=True),
    "hostname": Field(hostname),
    "arch": Field(arch),
    "agent_version": Field(version),
    "ip_address": Field(ip_address),
    "wireguard_port": Field(number(1, 65535, integer=True)),
    "wireguard_public_key": Field(wg_public_key, required=True),
}
HEARTBEAT = {
    "cpu": Field(obj({"count": Field(number(0, 65536, integer=True)),
                      "usage": Field(number(0, 1))})),
    "memory": Field(obj(_USAGE)),
    "disk": Field(obj(_USAGE)),
    "ip_address": Field(ip_address),
    "agent_version": Field(version),
    "hostname": Field(hostname),
    "arch": Field(arch),
    "docker": Field(obj({
        "version": Field(version, required=True),
        "swarm_state": Field(string(16, re.compile(r"^[a-z-]{1,16}$")), required=True),
        "swarm_node_id": Field(string(64, re.compile(r"^[a-z0-9]{0,64}$"), min_len=0))})),
    "tools": Field(tools),
    "processes": Field(processes),
}
TASK_RESULT = {
    "status": Field(one_of("succeeded", "failed"), required=True),
    "output": Field(string(65536, min_len=0)),
}
RENEW_REQUEST = {"csr": Field(CSR, required=True)}


def build(schema: dict[str, Field], **values: Any) -> dict[str, Any]:
    """A request body of `schema` from the values that are not None, checked exactly as
    the server will check it (so a bad body fails on the sender, with the field named)."""
    return validate({k: v for k, v in values.items() if v is not None}, schema,
                    where="request")
