"""The OpenAPI document: valid 3.1, and exactly the routes the application registers."""

from __future__ import annotations

import json
import re

import jsonschema_rs

from nimbus.server.openapi import document


def _walk_schemas(node, found):
    if isinstance(node, dict):
        if "schema" in node and isinstance(node["schema"], dict):
            found.append(node["schema"])
        for value in node.values():
            _walk_schemas(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk_schemas(value, found)
    return found


def test_document_is_valid_openapi_3_1():
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    doc = json.loads(json.dumps(document()))  # plain JSON, as served
    errors = [str(e) for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
    assert errors == []
    for schema in _walk_schemas(doc["paths"], []):
        jsonschema_rs.Draft202012Validator(schema)  # raises on an invalid schema
    import schemathesis

    loaded = schemathesis.openapi.from_dict(doc)
    assert sum(1 for _ in loaded.get_all_operations()) == sum(
        len(ops) for ops in doc["paths"].values())


def test_document_covers_exactly_the_registered_routes(inproc):
    app = inproc.app
    registered = {(r.method.lower(), re.sub(r"<([a-z_]+)>", r"{\1}", r.rule)) for r in app.routes}
    documented = {(m, p) for p, ops in document()["paths"].items() for m in ops
                  if m in ("get", "post", "put", "patch", "delete")}
    assert registered == documented


def test_request_bodies_reject_unknown_fields_in_the_document():
    for path, ops in document()["paths"].items():
        for method, op in ops.items():
            if not isinstance(op, dict) or "requestBody" not in op:
                continue
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert schema["additionalProperties"] is False, (method, path)


def test_every_operation_documents_its_auth_failures():
    for path, ops in document()["paths"].items():
        for method, op in ops.items():
            if op["security"] and {} not in op["security"]:
                assert "401" in op["responses"], (method, path)
