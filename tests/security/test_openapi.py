"""The served OpenAPI document, and every protected operation refusing anonymous callers.

The document itself (valid 3.1, exactly the registered routes) is tests/server/test_openapi.py.
"""

from __future__ import annotations

import json

import pytest

from nimbus.server.openapi import document
from tests.security.helpers import raw


def test_document_is_served_without_authentication(server):
    status, headers, body = raw(server, "GET", "/v1/openapi.json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["openapi"] == "3.1.0"


@pytest.mark.parametrize("method,path", sorted(
    (m.upper(), p) for p, ops in document()["paths"].items() for m, op in ops.items()
    if op["security"] and {} not in op["security"]))
def test_every_protected_operation_refuses_anonymous_callers(server, method, path):
    concrete = (path.replace("{user_id}", "user-0123456789abcdef")
                .replace("{node_id}", "node-0123456789abcdef")
                .replace("{task_id}", "task-0123456789abcdef")
                .replace("{access_key}", "NBUS0123456789ABCDEF"))
    body = b"{}" if method == "POST" else b""
    status, _, reply = raw(server, method, concrete, body, {"Content-Type": "application/json"})
    assert status == 401, (method, path, reply)
