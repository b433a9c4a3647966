"""Node identity: join with a one-time token, and certificate renewal."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any

from nimbus import wire
from nimbus.errors import BadRequest, Unauthorized
from nimbus.security import pki
from nimbus.server import audited, joinkeys, mesh, nodes
from nimbus.server.state import State

log = logging.getLogger("nimbus.enroll")
# SECURITY: one answer for unknown, wrong-secret, expired and used tokens alike.
JOIN_REFUSED = "join token is invalid, expired or already used"


def _refuse(state: State, node_id: str, reason: str, source: str) -> Unauthorized:
    state.audit.record("join.refused", state.now(), node_id=node_id, reason=reason,
                       source=source)
    return Unauthorized(JOIN_REFUSED)


def _issue(state: State, node_id: str, csr_pem: str) -> tuple[str, str, float]:
    return pki.sign_client_csr(state.keys.ca_pem, state.keys.ca_key_pem, csr_pem, node_id,
                               state.config.node_cert_lifetime_sec, state.now())


def _csr_key_sha256(csr: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    spki = csr.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _answered_before(state: State, node: dict[str, Any], body: dict[str, Any],
                     csr_key: str, now: float) -> str | None:
    """The certificate of a join this same request already made, if its answer was lost.

    The same token with the same CSR key (and the same WireGuard key), within the token's
    lifetime, is the agent retrying; anything else stays "already used".
    """
    join = node.get("join") or {}
    if (node["state"] != "pending" and join.get("used") and join.get("cert_pem")
            and not state.runtime.answered(node["id"]) and now <= float(join["expires_at"])
            and hmac.compare_digest(str(join.get("csr_key_sha256", "")), csr_key)
            and body["wireguard_public_key"] == node["wireguard_public_key"]):
        return str(join["cert_pem"])
    return None


def join(state: State, body: dict[str, Any], source: str
         ) -> tuple[dict[str, Any], Callable[[], None]]:
    """Validate and consume the token in one locked step, then sign the node's CSR.

    Returns the answer and the step to run once it has been sent: moving the control
    plane's peer for the node from the token's key to the node's own (joinkeys).
    A retry of the same join (its answer was lost) gets the same certificate again."""
    node_id, now = body["node_id"], state.now()
    presented = hashlib.sha256(body["secret"].encode()).hexdigest()
    csr_key = _csr_key_sha256(pki.check_csr(body["csr"]))  # a bad CSR consumes nothing
    with audited.transaction(state, "nodes", "tasks") as (tx, note):
        node = tx["nodes"].get(node_id)
        expected = ((node or {}).get("join") or {}).get("secret_sha256") or "0" * 64
        if not hmac.compare_digest(presented, expected) or node is None:
            raise _refuse(state, node_id, "unknown node or wrong secret", source)
        if node["join"]["used"] or node["state"] != "pending":
            cert_pem = _answered_before(state, node, body, csr_key, now)
            if cert_pem is None:
                raise _refuse(state, node_id, "token already used", source)
            retried = True
        else:
            retried = False
            if now > node["join"]["expires_at"]:
                raise _refuse(state, node_id, "token expired", source)
            if body["wireguard_public_key"] == node["wireguard_public_key"]:
                # The token's key pair is spent material: the node must bring its own.
                raise BadRequest("wireguard_public_key must be a new key made by the node, "
                                 "not the one from the join token")
            cert_pem, serial, not_after = _issue(state, node_id, body["csr"])
            # The hash stays so a replay is logged as "already used"; the secret is spent.
            # The CSR key and the certificate stay so a retry of this join gets the same.
            node["join"] = {**node["join"], "used": True, "used_at": round(now, 3),
                            "csr_key_sha256": csr_key, "cert_pem": cert_pem}
            joinkeys.begin_handover(node, body["wireguard_public_key"], now)
            node.update(state="active", joined_at=round(now, 3),
                        hostname=body.get("hostname"), arch=body.get("arch"),
                        agent_version=body.get("agent_version"),
                        reported_ip=body.get("ip_address"),
                        wireguard_port=body.get("wireguard_port", wire.WIREGUARD_PORT),
                        cert_serials=[serial], cert_expires_at=round(not_after, 3))
            announce = mesh.redistribute(state, tx, except_id=node_id)
            note("join.ok", node_id=node_id, source=source)
            note("cert.issued", node_id=node_id, serial=serial)
    if retried:
        state.audit.record("join.retried", now, node_id=node_id, source=source)
    else:
        nodes.seen(state, node_id, {"last_seen": round(now, 3)})
        announce()
    answer = {"node": nodes.public_node(state, node), "cert_pem": cert_pem,
              "ca_pem": state.keys.ca_pem, "peers": mesh.peers_for(state, node_id),
              "heartbeat_interval_sec": state.config.heartbeat_interval_sec,
              "client_address": source}
    return answer, lambda: joinkeys.end_handover(state, node_id,
                                                 lambda: mesh.reconcile(state))


def renew(state: State, node_id: str, csr_pem: str) -> dict[str, Any]:
    """A fresh certificate for an enrolled, unrevoked node (called over mTLS)."""
    pki.check_csr(csr_pem)
    with audited.transaction(state, "nodes") as (tx, note):
        node = tx["nodes"].get(node_id)
        if node is None:
            raise Unauthorized("node no longer exists")
        cert_pem, serial, not_after = _issue(state, node_id, csr_pem)
        # Keep the serials of certificates that are still valid so revocation covers them.
        node["cert_serials"] = [*node["cert_serials"][-4:], serial]
        node["cert_expires_at"] = round(not_after, 3)
        note("cert.renewed", node_id=node_id, serial=serial)
    return {"cert_pem": cert_pem, "ca_pem": state.keys.ca_pem, "not_after": not_after}
