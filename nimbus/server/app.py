"""create_app(state): the bottle WSGI application with every API module registered."""

from __future__ import annotations

import json

import bottle

from nimbus.server.api import (
    iam,
    internal,
    meta,
    nodelogs,
    nodes,
    ops,
    routing,
    s3,
    swarm,
    volumes,
)
from nimbus.server.authn import Authenticator
from nimbus.server.state import State

# each has register(router)
API_MODULES = (meta, iam, nodes, internal, ops, swarm, s3, volumes, nodelogs)


def create_app(state: State) -> bottle.Bottle:
    app = bottle.Bottle(catchall=True)
    app.config["json.enable"] = False  # handlers return HTTPResponse objects
    authn = Authenticator(state)
    router = routing.Router(app, state, authn)
    for module in API_MODULES:
        module.register(router)

    def json_error(err: bottle.HTTPError) -> str:
        bottle.response.content_type = "application/json"
        messages = {404: "no such endpoint", 405: "method not allowed on this endpoint"}
        return json.dumps({"error": messages.get(err.status_code, "request failed")})

    for code in (400, 404, 405, 413, 500):
        app.error_handler[code] = json_error
    return app
