"""Endpoint plumbing: body limits, authentication, validation, JSON envelopes, metrics."""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bottle

from nimbus import wire
from nimbus.errors import BadRequest, PayloadTooLarge
from nimbus.server import iam, problems
from nimbus.server.authn import Authenticator, Principal, require_admin
from nimbus.server.state import State

_date: tuple[int, str] = (0, "")
log = logging.getLogger("nimbus.api")
# In the body of every endpoint that mints lasting credentials; required with a bearer token.
CURRENT_PASSWORD = wire.Field(wire.string(1024))


@dataclass
class Ctx:
    state: State
    environ: dict[str, Any]
    body: dict[str, Any]
    source: str
    principal: Principal | None = None
    node_id: str | None = None
    query: dict[str, str] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        """Who the audit log names for this request: the operator's user ID, or "system"."""
        return self.principal.user_id if self.principal else "system"


def reauthenticate(ctx: Ctx) -> None:
    """SECURITY: a stolen 1-hour JWT must not become lasting access: an API key, a password,
    or join material (a node whose certificate renews itself). With a bearer token the body
    must carry the caller's current password; an HMAC signature is proof enough."""
    assert ctx.principal is not None
    if ctx.principal.via == "jwt":
        iam.confirm_password(ctx.state, ctx.principal.user_id,
                             ctx.body.get("current_password"), ctx.source)


def read_body(environ: dict[str, Any]) -> bytes:
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length:
        if not length.isdigit():
            raise BadRequest("invalid Content-Length")
        if int(length) > wire.MAX_BODY:
            raise PayloadTooLarge("request body is larger than 1 MiB")
        return stream.read(int(length))
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        data = stream.read(wire.MAX_BODY + 1)
        if len(data) > wire.MAX_BODY:
            raise PayloadTooLarge("request body is larger than 1 MiB")
        return data
    return b""


def http_date() -> str:
    """The Date header, formatted once a second: cheroot's own formatdate() per response was
    ~2 % of a cached listing's cost, and a response carrying Date skips it."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True))
    return _date[1]


def json_headers() -> dict[str, str]:
    return {"Content-Type": "application/json", "Date": http_date()}


def respond(status: int, data: Any, headers: dict[str, str] | None = None) -> bottle.HTTPResponse:
    if isinstance(data, str):
        body = data.encode()
        hdrs = {"Content-Type": "text/plain; charset=utf-8", "Date": http_date()}
    else:
        body, hdrs = json.dumps({"data": data}, separators=(",", ":")).encode(), json_headers()
    hdrs.update(headers or {})
    return bottle.HTTPResponse(body=body, status=status, headers=hdrs)


def respond_encoded(status: int, body: bytes) -> bottle.HTTPResponse:
    """Like respond(), for a whole `{"data": ...}` body that is already JSON (a cached
    listing), sent as it is."""
    return bottle.HTTPResponse(body=body, status=status, headers=json_headers())


class _ThenIter:
    """A response body that runs `then` when the server has written it (WSGI close())."""

    def __init__(self, body: bytes, then: Callable[[], None]) -> None:
        self._body = body
        self._then = then

    def __iter__(self) -> Any:
        return iter([self._body])

    def close(self) -> None:
        then, self._then = self._then, None
        if then is not None:
            try:
                then()
            except Exception:  # the answer is out; a failure here is logged, not sent
                log.exception("after-response step failed")


def respond_then(status: int, data: Any, then: Callable[[], None]) -> bottle.HTTPResponse:
    """Like respond(), and run `then` once the answer has been sent (or the send failed)."""
    response = respond(status, data)
    response.set_header("Content-Length", str(len(response.body)))
    response.body = _ThenIter(response.body, then)
    return response


class Router:
    """Registers thin handlers on a bottle app with one shared wrapper."""

    def __init__(self, app: bottle.Bottle, state: State, authn: Authenticator) -> None:
        self.app = app
        self.state = state
        self.authn = authn

    def add(self, method: str, path: str, auth: str, schema: dict[str, wire.Field] | None = None,
            status: int = 200) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """auth is one of: none, user, admin, node."""
        def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(**url_args: str) -> Any:
                response = self._handle(method, path, auth, schema, status, handler, url_args)
                # Bottle applies a returned HTTPResponse to its thread's response twice and
                # casts it twice; applied here once, bottle only casts the body.
                response.apply(bottle.response)
                return response.body
            self.app.route(path, method, wrapper)
            return handler
        return decorate

    def _handle(self, method: str, path: str, auth: str, schema: dict[str, wire.Field] | None,
                status: int, handler: Callable[..., Any],
                url_args: dict[str, str]) -> bottle.HTTPResponse:
        started = time.perf_counter()
        environ = bottle.request.environ
        try:
            raw = read_body(environ)
            ctx = Ctx(self.state, environ, {}, environ.get("REMOTE_ADDR", ""))
            if environ.get("QUERY_STRING"):
                ctx.query = dict(bottle.request.query)
            if auth in ("user", "admin"):
                ctx.principal = self.authn.operator(environ, raw)
                if auth == "admin":
                    require_admin(ctx.principal)
            elif auth == "node":
                ctx.node_id = self.authn.node(environ)
            if schema is not None:
                ctx.body = wire.validate(wire.decode_json(raw), schema)
            elif raw.strip() and raw.strip() != b"{}":
                raise BadRequest("this endpoint takes no request body")
            result = handler(ctx, **url_args)
            if isinstance(result, bottle.HTTPResponse):
                response = result
            else:
                response = respond(status, result)
        except Exception as exc:  # noqa: BLE001 - problems.py is the one error table
            code, headers, body = problems.from_exception(exc)
            response = bottle.HTTPResponse(body=body, status=code,
                                           headers={**json_headers(), **headers})
        self.state.metrics.observe(path, method, response.status_code,
                                   time.perf_counter() - started)
        return response
