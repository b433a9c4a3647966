"""Unauthenticated endpoints: health, version, the CA certificate, the OpenAPI document."""

from __future__ import annotations

import json

import bottle

from nimbus import __version__
from nimbus.server.api.routing import Ctx, Router


def register(r: Router) -> None:
    @r.add("GET", "/healthz", auth="none")
    def healthz(ctx: Ctx) -> dict[str, str]:
        return {"status": "ok"}

    @r.add("GET", "/v1/version", auth="none")
    def version(ctx: Ctx) -> dict[str, str]:
        return {"version": __version__}

    @r.add("GET", "/v1/ca", auth="none")
    def ca(ctx: Ctx) -> str:
        return ctx.state.keys.ca_pem

    @r.add("GET", "/v1/openapi.json", auth="none")
    def openapi(ctx: Ctx) -> bottle.HTTPResponse:
        from nimbus.server.openapi import document

        # The bare document (not the {"data": …} envelope), as OpenAPI tools expect it.
        return bottle.HTTPResponse(body=json.dumps(document()), status=200,
                                   headers={"Content-Type": "application/json"})
