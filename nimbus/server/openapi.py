"""The OpenAPI 3.1 document of every route the API registers (served at /v1/openapi.json).

Request schemas mirror the `wire` schemas in `server/api/*.py` (unknown fields are
rejected there, hence `additionalProperties: false` here); `tests/security/test_openapi.py`
fails when a route is added without being described here.
"""

from __future__ import annotations

from typing import Any

from nimbus import __version__, wire

Schema = dict[str, Any]

ID_PATTERNS = {
    "user": r"^user-[0-9a-f]{16}$",
    "node": r"^node-[0-9a-f]{16}$",
    "task": r"^task-[0-9a-f]{16}$",
    "key": r"^NBUS[0-9A-Z]{16}$",
}
NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", "maxLength": 63}
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = {"type": "string", "maxLength": 253,  # wire.HOSTNAME_RE without its lookahead
            "pattern": f"^{_LABEL}(?:\\.{_LABEL})*$"}
ARCH = {"type": "string", "pattern": "^" + wire.ARCH_RE.pattern + "$"}
VERSION = {"type": "string", "pattern": "^" + wire.VERSION_RE.pattern + "$"}
WG_KEY = {"type": "string", "pattern": "^" + wire.WG_KEY_RE.pattern + "$"}
IP = {"type": "string", "maxLength": 64, "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
      "description": "an IPv4 or IPv6 address without a zone id"}
HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
CSR = {"type": "string", "maxLength": 8192,
       "pattern": r"^-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]+"
                  r"-----END CERTIFICATE REQUEST-----\n?$"}
BIG = 2**63
USAGE = {"type": "object", "additionalProperties": False, "properties": {
    "total": {"type": "number", "minimum": 0, "maximum": BIG},
    "used": {"type": "number", "minimum": 0, "maximum": BIG}}}

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


# Required when the request carries a bearer token (a JWT alone cannot mint credentials).
CURRENT_PASSWORD = {"type": "string", "minLength": 1, "maxLength": 1024,
                    "description": "the caller's password; required with a bearer token"}
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
                                              "schema": {"type": "number"}}]}}
    p["/v1/bootstrap"] = {"post": _op(
        "Remote bootstrap with the one-time secret", NONE, (201, 403, 409, 429), ANY_OBJECT,
        obj({"ca_fingerprint": HEX64, "nonce": {"type": "string", "pattern": "^[0-9a-f]{32,128}$"},
             "proof": HEX64}, ("ca_fingerprint", "nonce", "proof")), tag="iam")}
    p["/v1/iam/login"] = {"post": _op(
        "Log in with username and password", NONE, (200, 401, 429), TOKEN,
        obj({"username": {"type": "string", "minLength": 1, "maxLength": 256},
             "password": {"type": "string", "minLength": 1, "maxLength": 1024}},
            ("username", "password")), tag="iam")}
    p["/v1/iam/token"] = {"post": _op("Issue a JWT to an HMAC-signed request", OPERATOR,
                                      (200, 401, 403), TOKEN, obj({}), tag="iam")}
    p["/v1/iam/users"] = {
        "get": _op("List users", OPERATOR, ADMIN_AUTH, list_of(USER), tag="iam"),
        "post": _op("Create a user", OPERATOR, (201, 401, 403, 409), USER,
                    obj({"username": NAME, "admin": {"type": "boolean"}}, ("username",)),
                    tag="iam")}
    p["/v1/iam/users/{user_id}"] = {
        "get": _op("Describe a user", OPERATOR, (401, 403, 404), USER, params=UID, tag="iam"),
        "delete": _op("Delete a user and its keys", OPERATOR, (401, 403, 404, 409), ANY_OBJECT,
                      params=UID, tag="iam")}
    p["/v1/iam/users/{user_id}/keys"] = {
        "get": _op("List a user's API keys", OPERATOR, (401, 403, 404), list_of(KEY),
                   params=UID, tag="iam"),
        "post": _op("Create an API key (secret shown once)", OPERATOR,
                    (201, 401, 403, 404, 429), KEY, obj({"current_password": CURRENT_PASSWORD}),
                    UID, tag="iam")}
    p["/v1/iam/users/{user_id}/keys/{access_key}"] = {"delete": _op(
        "Delete an API key", OPERATOR, (401, 403, 404), ANY_OBJECT,
        params=[*UID, _param("access_key", "key")], tag="iam")}
    p["/v1/iam/users/{user_id}/password"] = {"post": _op(
        "Set a user's password", OPERATOR, (401, 403, 404, 429), ANY_OBJECT,
        obj({"password": {"type": "string", "minLength": 8, "maxLength": 1024},
             "current_password": CURRENT_PASSWORD}, ("password",)),
        UID, tag="iam")}
    p["/v1/nodes"] = {
        "get": _op("List nodes", OPERATOR, USER_AUTH, list_of(NODE_OBJ), tag="nodes"),
        "post": _op("Add a node and get its one-time join token", OPERATOR, (201, 401, 403, 409),
                    obj({"node": NODE_OBJ, "join_token": {"type": "string"}},
                        ("node", "join_token")),
                    obj({"ip_address": IP, "name": NAME}, ("ip_address",)), tag="nodes")}
    p["/v1/nodes/{node_id}"] = {
        "get": _op("Describe a node", OPERATOR, (401, 404), NODE_OBJ, params=NID, tag="nodes"),
        "delete": _op("Delete a node and revoke its certificates", OPERATOR, (401, 403, 404),
                      ANY_OBJECT, params=NID, tag="nodes")}
    p["/v1/nodes/{node_id}/drain"] = {"post": _op(
        "Drain a node", OPERATOR, (401, 403, 404, 409), NODE_OBJ, obj({}), NID, tag="nodes")}
    p["/v1/nodes/{node_id}/undrain"] = {"post": _op(
        "Take a draining node back into service", OPERATOR, (401, 403, 404, 409), NODE_OBJ,
        obj({}), NID, tag="nodes")}
    p["/v1/nodes/{node_id}/token"] = {"post": _op(
        "A fresh join token for a pending node (the previous one stops working)", OPERATOR,
        (401, 403, 404, 409), obj({"node": NODE_OBJ, "join_token": {"type": "string"}},
                                  ("node", "join_token")), obj({}), NID, tag="nodes")}
    p["/v1/nodes/{node_id}/ip"] = {"post": _op(
        "Change a node's public IP", OPERATOR, (401, 403, 404), NODE_OBJ,
        obj({"ip_address": IP}, ("ip_address",)), NID, tag="nodes")}
    p["/v1/nodes/join"] = {"post": _op(
        "Join with a one-time token and a CSR", NONE, (200, 401), ANY_OBJECT,
        obj({"node_id": {"type": "string", "pattern": ID_PATTERNS["node"]},
             "secret": {"type": "string", "minLength": 1, "maxLength": 128}, "csr": CSR,
             "hostname": HOSTNAME, "arch": ARCH, "agent_version": VERSION, "ip_address": IP,
             "wireguard_port": {"type": "integer", "minimum": 1, "maximum": 65535},
             "wireguard_public_key": WG_KEY},
            ("node_id", "secret", "csr", "wireguard_public_key")), tag="internal")}
    p["/v1/internal/heartbeat"] = {"post": _op(
        "Node heartbeat (mTLS)", NODE, (401, 404), ANY_OBJECT,
        obj({"cpu": obj({"count": {"type": "integer", "minimum": 0, "maximum": 65536},
                         "usage": {"type": "number", "minimum": 0, "maximum": 1}}),
             "memory": USAGE, "disk": USAGE, "ip_address": IP, "agent_version": VERSION,
             "hostname": HOSTNAME, "arch": ARCH}), tag="internal")}
    p["/v1/internal/tasks/{node_id}"] = {"get": {**_op(
        "Pending tasks of the calling node (mTLS, may long-poll)", NODE, (401, 403),
        list_of(TASK), tag="internal"),
        "parameters": [*NID, {"name": "wait", "in": "query", "required": False,
                              "schema": {"type": "number", "minimum": 0}}]}}
    p["/v1/internal/tasks/{task_id}/result"] = {"post": _op(
        "Report a task result (mTLS)", NODE, (401, 404), ANY_OBJECT,
        obj({"status": {"enum": ["succeeded", "failed"]},
             "output": {"type": "string", "maxLength": 65536}}, ("status",)),
        [_param("task_id", "task")], tag="internal")}
    p["/v1/internal/renew"] = {"post": _op(
        "Renew the node certificate with a fresh CSR (mTLS)", NODE, (401,), ANY_OBJECT,
        obj({"csr": CSR}, ("csr",)), tag="internal")}
    return p


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
