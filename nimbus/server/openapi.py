"""The OpenAPI 3.1 document of every route the API registers (served at /v1/openapi.json).

Request bodies are derived from the schemas the handlers validate with (`nimbus.wire`
for the agent's requests, `server/api/*.py` for the operator's), so the document cannot
drift from what the API accepts; `tests/security/test_openapi.py` fails when a route is
added without being described here.
"""

from __future__ import annotations

from typing import Any

from nimbus import __version__, wire
from nimbus.server.api import iam as iam_api
from nimbus.server.api import nodelogs as nodelogs_api
from nimbus.server.api import nodes as nodes_api
from nimbus.server.api import s3 as s3_api
from nimbus.server.api import swarm as swarm_api
from nimbus.server.api import volumes as volumes_api

Schema = dict[str, Any]

ID_PATTERNS = {kind: regex.pattern for kind, regex in wire.ID_RE.items()}


REAUTH = ("required with a bearer token (the caller's password); not with an HMAC signature")


def body(schema: dict[str, wire.Field]) -> Schema:
    """A request body exactly as the handler validates it (unknown fields refused)."""
    out = wire.json_schema(schema)
    if "current_password" in out.get("properties", {}):
        out["properties"]["current_password"] = {**out["properties"]["current_password"],
                                                 "description": REAUTH}
    return out


# Operator credentials: HMAC request signing (four headers) or a bearer JWT.
OPERATOR = [{"hmacAccessKey": [], "hmacTimestamp": [], "hmacNonce": [], "hmacSignature": []},
            {"bearerJWT": []}]
NODE = [{"nodeCertificate": []}]
NONE: list[dict[str, list[str]]] = []

MESSAGES = {200: "OK", 201: "Created", 400: "Invalid input (unknown field, bad format)",
            401: "Not authenticated", 403: "Not allowed", 404: "No such resource",
            409: "Conflict with the current state", 413: "Request body over 1 MiB",
            429: "Throttled (see Retry-After)"}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    out: Schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def _data(schema: Schema) -> Schema:
    return {"type": "object", "required": ["data"], "properties": {"data": schema}}


ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
ANY_OBJECT: Schema = {"type": "object"}
USER = {"type": "object", "required": ["id", "username", "admin", "created_at"], "properties": {
    "id": {"type": "string"}, "username": {"type": "string"}, "admin": {"type": "boolean"},
    "created_at": {"type": "number"}, "has_password": {"type": "boolean"}}}
KEY = {"type": "object", "required": ["access_key", "user_id", "created_at"], "properties": {
    "access_key": {"type": "string"}, "user_id": {"type": "string"},
    "created_at": {"type": "number"}, "secret_key": {"type": "string"}}}
NODE_OBJ = {"type": "object", "required": ["id", "name", "ip_address", "wireguard_ip",
                                           "wireguard_public_key", "status"],
            "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                           "status": {"enum": ["pending", "ready", "offline", "draining"]}}}
TOKEN = {"type": "object", "required": ["token", "expires_at"],
         "properties": {"token": {"type": "string"}, "expires_at": {"type": "integer"}}}
TASK = {"type": "object", "required": ["id", "type", "payload"],
        "properties": {"id": {"type": "string"}, "type": {"type": "string"},
                       "payload": {"type": "object"}}}


def _param(name: str, kind: str) -> Schema:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "pattern": ID_PATTERNS[kind]}}


def _ref(name: str) -> Schema:
    """A path parameter that is an id or a name (looked up, never used as a path or argv)."""
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 64}}


def _op(summary: str, security: list[dict[str, list[str]]], codes: tuple[int, ...],
        ok: Schema | None = None, body: Schema | None = None, params: list[Schema] | None = None,
        text: bool = False, tag: str = "meta", bare: bool = False) -> Schema:
    """One operation; every route can also answer 400 (bad body) and 413 (body too large)."""
    success = 201 if 201 in codes else 200
    responses: dict[str, Any] = {}
    for code in sorted({*codes, success, 400, 413}):
        if code == success:
            content = ({"text/plain": {"schema": {"type": "string"}}} if text else
                       {"application/json": {"schema": (ok or ANY_OBJECT) if bare
                                             else _data(ok or ANY_OBJECT)}})
        else:
            content = {"application/json": {"schema": ERROR}}
        entry: Schema = {"description": MESSAGES[code], "content": content}
        if code == 429:
            entry["headers"] = {"Retry-After": {"required": True,
                                                "schema": {"type": "integer", "minimum": 1}}}
        responses[str(code)] = entry
    op: Schema = {"summary": summary, "tags": [tag], "responses": responses,
                  "security": security, "operationId": _op_id(summary)}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": body}}}
    return op


def _op_id(summary: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in summary).split()
    return words[0].lower() + "".join(w.capitalize() for w in words[1:])


USER_AUTH = (401,)
ADMIN_AUTH = (401, 403)
UID = [_param("user_id", "user")]
NID = [_param("node_id", "node")]


def _paths() -> dict[str, dict[str, Schema]]:
    list_of = lambda s: {"type": "array", "items": s}  # noqa: E731
    p: dict[str, dict[str, Schema]] = {}
    p["/healthz"] = {"get": _op("Health check", NONE, (200,), obj({"status": {"const": "ok"}}))}
    p["/v1/version"] = {"get": _op("Server version", NONE, (200,), ANY_OBJECT)}
    p["/v1/ca"] = {"get": _op("CA certificate PEM", NONE, (200,), text=True)}
    p["/v1/openapi.json"] = {"get": _op("This OpenAPI document", NONE, (200,),
                                           {"type": "object", "required": ["openapi", "paths"]},
                                           bare=True)}
    p["/metrics"] = {"get": _op(
        "Prometheus metrics (loopback without credentials, else admin)",
        [{}, *OPERATOR], ADMIN_AUTH, text=True, tag="ops")}
    p["/v1/audit"] = {"get": {**_op("Audit events", OPERATOR, ADMIN_AUTH, list_of(ANY_OBJECT),
                                    tag="ops"),
                              "parameters": [{"name": "since", "in": "query", "required": False,
                                              "schema": {"type": "number", "minimum": 0,
                                                         "maximum": 1e11}}]}}
    p["/v1/bootstrap"] = {"post": _op(
        "Remote bootstrap with the one-time secret", NONE, (201, 403, 409, 429), ANY_OBJECT,
        body(iam_api.BOOTSTRAP_SCHEMA), tag="iam")}
    p["/v1/iam/login"] = {"post": _op(
        "Log in with username and password", NONE, (200, 401, 429), TOKEN,
        body(iam_api.LOGIN_SCHEMA), tag="iam")}
    p["/v1/iam/token"] = {"post": _op("Issue a JWT to an HMAC-signed request", OPERATOR,
                                      (200, 401, 403), TOKEN, body({}), tag="iam")}
    p["/v1/iam/users"] = {
        "get": _op("List users", OPERATOR, ADMIN_AUTH, list_of(USER), tag="iam"),
        "post": _op("Create a user", OPERATOR, (201, 401, 403, 409), USER,
                    body(iam_api.USER_SCHEMA),
                    tag="iam")}
    p["/v1/iam/users/{user_id}"] = {
        "get": _op("Describe a user", OPERATOR, (401, 403, 404), USER, params=UID, tag="iam"),
        "delete": _op("Delete a user and its keys", OPERATOR, (401, 403, 404, 409), ANY_OBJECT,
                      params=UID, tag="iam")}
    p["/v1/iam/users/{user_id}/keys"] = {
        "get": _op("List a user's API keys", OPERATOR, (401, 403, 404), list_of(KEY),
                   params=UID, tag="iam"),
        "post": _op("Create an API key (secret shown once)", OPERATOR,
                    (201, 401, 403, 404, 409, 429), KEY, body(iam_api.KEY_SCHEMA),
                    UID, tag="iam")}
    p["/v1/iam/users/{user_id}/keys/{access_key}"] = {"delete": _op(
        "Delete an API key", OPERATOR, (401, 403, 404), ANY_OBJECT,
        params=[*UID, _param("access_key", "key")], tag="iam")}
    p["/v1/iam/users/{user_id}/password"] = {"post": _op(
        "Set a user's password", OPERATOR, (401, 403, 404, 429), ANY_OBJECT,
        body(iam_api.PASSWORD_SCHEMA),
        UID, tag="iam")}
    p["/v1/nodes"] = {
        "get": _op("List nodes", OPERATOR, USER_AUTH, list_of(NODE_OBJ), tag="nodes"),
        "post": _op("Add a node and get its one-time join token", OPERATOR,
                    (201, 401, 403, 409, 429),
                    obj({"node": NODE_OBJ, "join_token": {"type": "string"}},
                        ("node", "join_token")),
                    body(nodes_api.CREATE_SCHEMA), tag="nodes")}
    p["/v1/nodes/{node_id}"] = {
        "get": _op("Describe a node", OPERATOR, (401, 404), NODE_OBJ, params=NID, tag="nodes"),
        "delete": _op("Delete a node and revoke its certificates", OPERATOR, (401, 403, 404),
                      ANY_OBJECT, params=NID, tag="nodes")}
    p["/v1/nodes/{node_id}/drain"] = {"post": _op(
        "Drain a node", OPERATOR, (401, 403, 404, 409), NODE_OBJ, body({}), NID, tag="nodes")}
    p["/v1/nodes/{node_id}/undrain"] = {"post": _op(
        "Take a draining node back into service", OPERATOR, (401, 403, 404, 409), NODE_OBJ,
        body({}), NID, tag="nodes")}
    p["/v1/nodes/{node_id}/token"] = {"post": _op(
        "A fresh join token for a pending node (the previous one stops working)", OPERATOR,
        (401, 403, 404, 409, 429),
        obj({"node": NODE_OBJ, "join_token": {"type": "string"}}, ("node", "join_token")),
        body(nodes_api.TOKEN_SCHEMA), NID, tag="nodes")}
    p["/v1/nodes/{node_id}/ip"] = {"post": _op(
        "Change a node's public IP", OPERATOR, (401, 403, 404), NODE_OBJ,
        body(nodes_api.IP_SCHEMA), NID, tag="nodes")}
    p["/v1/nodes/join"] = {"post": _op(
        "Join with a one-time token and a CSR", NONE, (200, 401), ANY_OBJECT,
        body(wire.JOIN_REQUEST), tag="internal")}
    p["/v1/internal/heartbeat"] = {"post": _op(
        "Node heartbeat (mTLS)", NODE, (401, 404), ANY_OBJECT,
        body(wire.HEARTBEAT), tag="internal")}
    p["/v1/internal/tasks/{node_id}"] = {"get": {**_op(
        "Pending tasks of the calling node (mTLS, may long-poll)", NODE, (401, 403),
        list_of(TASK), tag="internal"),
        "parameters": [*NID, {"name": "wait", "in": "query", "required": False,
                              "schema": {"type": "number", "minimum": 0}}]}}
    p["/v1/internal/tasks/{task_id}/result"] = {"post": _op(
        "Report a task result (mTLS)", NODE, (401, 404), ANY_OBJECT,
        body(wire.TASK_RESULT),
        [_param("task_id", "task")], tag="internal")}
    p["/v1/internal/renew"] = {"post": _op(
        "Renew the node certificate with a fresh CSR (mTLS)", NODE, (401,), ANY_OBJECT,
        body(wire.RENEW_REQUEST), tag="internal")}
    p.update(_workload_paths())
    p.update(_s3_paths())
    p.update(_volume_paths())
    return p


def _workload_paths() -> dict[str, dict[str, Schema]]:
    """Swarm groups and compose services (docs/workloads.md)."""
    list_of = lambda s: {"type": "array", "items": s}  # noqa: E731
    ref, node = [_ref("ref")], [_ref("ref"), _ref("node")]
    force = {"name": "force", "in": "query", "required": False, "schema": {"type": "string"}}
    return {
        "/v1/swarms": {
            "get": _op("List swarm groups", OPERATOR, USER_AUTH, list_of(ANY_OBJECT),
                       tag="swarm"),
            "post": _op("Create a swarm group", OPERATOR, (201, 401, 403, 409), ANY_OBJECT,
                        body(swarm_api.CREATE_SCHEMA), tag="swarm")},
        "/v1/swarms/{ref}": {
            "get": _op("Describe a swarm group", OPERATOR, (401, 404), ANY_OBJECT, params=ref,
                       tag="swarm"),
            "delete": _op("Delete a swarm group", OPERATOR, (401, 403, 404, 409), ANY_OBJECT,
                          params=ref, tag="swarm")},
        "/v1/swarms/{ref}/nodes": {"post": _op(
            "Add a node to a swarm group", OPERATOR, (401, 403, 404, 409), ANY_OBJECT,
            body(swarm_api.ADD_NODE_SCHEMA), ref, tag="swarm")},
        "/v1/swarms/{ref}/nodes/{node}": {"delete": {**_op(
            "Remove a node from a swarm group", OPERATOR, (401, 403, 404, 409), ANY_OBJECT,
            tag="swarm"), "parameters": [*node, force]}},
        "/v1/services": {
            "get": {**_op("List compose services", OPERATOR, (401, 404), list_of(ANY_OBJECT),
                          tag="swarm"),
                    "parameters": [{"name": "swarm", "in": "query", "required": False,
                                    "schema": {"type": "string"}}]},
            "post": _op("Deploy a compose stack", OPERATOR, (201, 401, 403, 404, 409),
                        ANY_OBJECT, body(swarm_api.DEPLOY_SCHEMA), tag="swarm")},
        "/v1/services/{name}": {
            "get": _op("Describe a compose service", OPERATOR, (401, 404), ANY_OBJECT,
                       params=[_ref("name")], tag="swarm"),
            "delete": _op("Remove a compose service", OPERATOR, (401, 403, 404, 409),
                          ANY_OBJECT, params=[_ref("name")], tag="swarm")},
        **_day2_paths(),
    }


def _day2_paths() -> dict[str, dict[str, Schema]]:
    """Scale, stop, start and logs of stacks; an agent's own logs (docs/workloads.md)."""
    name, admin = [_ref("name")], (401, 403, 404, 409)
    fetch = {"name": "fetch_id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": r"^fetch-[0-9a-f]{24}$"}}
    cursor = {"name": "cursor", "in": "query", "required": False,
              "schema": {"type": "integer", "minimum": 0}}
    read = {"type": "object", "required": ["id", "lines", "cursor", "done"], "properties": {
        "id": {"type": "string"}, "lines": {"type": "array"}, "cursor": {"type": "integer"},
        "done": {"type": "boolean"}, "error": {"type": "string"},
        "truncated": {"type": "boolean"}, "dropped": {"type": "integer"}}}
    read_op = {**_op("Lines of a log read after the cursor (answers at once)", OPERATOR,
                     (401, 403, 404), read, tag="swarm"), "parameters": [*name, fetch, cursor]}
    return {
        "/v1/services/{name}/scale": {"post": _op(
            "Set replica counts of services", OPERATOR, admin, ANY_OBJECT,
            body(swarm_api.SCALE_SCHEMA), name, tag="swarm")},
        "/v1/services/{name}/stop": {"post": _op(
            "Stop every service (0 replicas, stack kept)", OPERATOR, admin, ANY_OBJECT,
            params=name, tag="swarm")},
        "/v1/services/{name}/start": {"post": _op(
            "Start a stopped stack again", OPERATOR, admin, ANY_OBJECT, params=name,
            tag="swarm")},
        "/v1/services/{name}/logs": {"post": _op(
            "Open a read of the stack's container output", OPERATOR, (201, *admin, 429),
            ANY_OBJECT, body(swarm_api.LOGS_SCHEMA), name, tag="swarm")},
        "/v1/services/{name}/logs/{fetch_id}": {
            "get": read_op,
            "delete": {**_op("Close a log read", OPERATOR, (401, 403), ANY_OBJECT, tag="swarm"),
                       "parameters": [*name, fetch]}},
        "/v1/nodes/{ref}/logs": {"post": _op(
            "Open a read of an agent's own recent log lines", OPERATOR, (201, *admin, 429),
            ANY_OBJECT, body(nodelogs_api.SCHEMA), [_ref("ref")], tag="nodes")},
        "/v1/nodes/{ref}/logs/{fetch_id}": {"get": {**read_op, "parameters": [
            _ref("ref"), fetch, cursor]}},
    }


def _s3_paths() -> dict[str, dict[str, Schema]]:
    """S3 instances: SeaweedFS across nodes (docs/s3.md)."""
    ref = [_ref("ref")]
    purge = {"name": "purge_data", "in": "query", "required": False,
             "schema": {"type": "string"}}
    return {
        "/v1/s3": {
            "get": _op("List S3 instances", OPERATOR, USER_AUTH,
                       {"type": "array", "items": ANY_OBJECT}, tag="s3"),
            "post": _op("Create an S3 instance (SeaweedFS across nodes)", OPERATOR,
                        (201, 401, 403, 404, 409), ANY_OBJECT, body(s3_api.CREATE_SCHEMA),
                        tag="s3")},
        "/v1/s3/{ref}": {
            "get": _op("Describe an S3 instance", OPERATOR, (401, 404), ANY_OBJECT,
                       params=ref, tag="s3"),
            "patch": _op("Change an S3 instance's replication (deleted nodes leave it)",
                         OPERATOR, (401, 403, 404, 409), ANY_OBJECT,
                         body(s3_api.UPDATE_SCHEMA), ref, tag="s3"),
            "delete": {**_op("Delete an S3 instance (its processes stop)", OPERATOR,
                             (401, 403, 404), ANY_OBJECT, tag="s3"),
                       "parameters": [*ref, purge]}},
        "/v1/s3/{ref}/credentials": {"post": _op(
            "The S3 access and secret key (admin, audited); rotate: a new secret", OPERATOR,
            (401, 403, 404, 409), ANY_OBJECT, body(s3_api.CREDENTIALS_SCHEMA), ref,
            tag="s3")},
    }


def _volume_paths() -> dict[str, dict[str, Schema]]:
    """NFS volumes (docs/workloads.md "Volumes")."""
    list_of = lambda s: {"type": "array", "items": s}  # noqa: E731
    ref = [_ref("ref")]
    force = {"name": "force", "in": "query", "required": False, "schema": {"type": "string"}}
    return {
        "/v1/volumes": {
            "get": _op("List NFS volumes", OPERATOR, USER_AUTH, list_of(ANY_OBJECT),
                       tag="volumes"),
            "post": _op("Create an NFS volume served by a node for a swarm", OPERATOR,
                        (201, 401, 403, 404, 409), ANY_OBJECT, body(volumes_api.CREATE_SCHEMA),
                        tag="volumes")},
        "/v1/volumes/{ref}": {
            "get": _op("Describe an NFS volume", OPERATOR, (401, 404), ANY_OBJECT, params=ref,
                       tag="volumes"),
            "delete": {**_op("Delete an NFS volume (its data stays in the folder)", OPERATOR,
                             (401, 403, 404, 409), ANY_OBJECT, tag="volumes"),
                       "parameters": [*ref, force]}},
    }


def document(server_url: str | None = None) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document as a plain dict (JSON-serialisable)."""
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Nimbus control plane API", "version": __version__,
                 "description": "JSON in, JSON out: {\"data\": …} on success, "
                                "{\"error\": \"…\"} on failure (design.md §5a)."},
        "paths": _paths(),
        "components": {"securitySchemes": {
            "hmacAccessKey": {"type": "apiKey", "in": "header", "name": "X-Access-Key",
                              "description": "HMAC-SHA256 request signing: the access key ID"},
            "hmacTimestamp": {"type": "apiKey", "in": "header", "name": "X-Timestamp",
                              "description": "RFC 3339 UTC; at most 300 s of skew"},
            "hmacNonce": {"type": "apiKey", "in": "header", "name": "X-Nonce",
                          "description": "at least 16 random bytes, lowercase hex; single use"},
            "hmacSignature": {
                "type": "apiKey", "in": "header", "name": "X-Signature",
                "description": "hex HMAC-SHA256(secret, METHOD\\nPATH_AND_QUERY\\nTIMESTAMP"
                               "\\nNONCE\\nhex(sha256(body)))"},
            "bearerJWT": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                          "description": "HS256, 1 hour, from /v1/iam/login or /v1/iam/token"},
            "nodeCertificate": {"type": "mutualTLS",
                                "description": "client certificate issued at join; CN = node"},
        }},
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
