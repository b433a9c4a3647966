"""A deleted node says so once; in WireGuard mode it asks the public address (rate-limited)."""

from __future__ import annotations

import logging
from pathlib import Path

from nimbus.agent.files import AgentFiles
from nimbus.agent.membership import PROBE_EVERY_SEC, Membership, public_api_url
from nimbus.config import AgentConfig
from nimbus.errors import Unauthorized

WG = AgentConfig(api_url="https://10.106.103.1:8443", node_id="node-0123456789abcdef")


def test_the_public_api_url_is_the_endpoints_host_and_the_api_port():
    assert public_api_url(WG, {"control_plane_endpoint": "203.0.113.10:51820"}) == \
        "https://203.0.113.10:8443"
    assert public_api_url(WG, {"control_plane_endpoint": "[2001:db8::1]:51820"}) == \
        "https://[2001:db8::1]:8443"
    assert public_api_url(WG, {}) is None
    plain = AgentConfig(api_url="https://192.0.2.1:8443", wireguard=False)
    assert public_api_url(plain, {"control_plane_endpoint": "192.0.2.1:51820"}) is None


def test_removal_is_said_once_and_cleared_by_an_accepted_heartbeat(tmp_path, caplog):
    m = Membership(WG, {}, AgentFiles(tmp_path), clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, logger="nimbus.agent"):
        for _ in range(5):
            assert m.refused(Unauthorized("certificate has been revoked")) >= 60
        m.accepted()
        m.accepted()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("was removed" in msg for msg in messages) == 1
    assert sum("accepts this node again" in msg for msg in messages) == 1
    assert str(tmp_path) in messages[0]


def test_probes_are_rate_limited_and_an_unreachable_host_is_not_removal(tmp_path):
    now = [1000.0]
    files = AgentFiles(Path(tmp_path))
    files.prepare()
    from nimbus.security.pki import create_ca

    files.ca.write_text(create_ca(0)[0])
    # No client certificate here and nothing listening: neither counts as removal.
    config = AgentConfig(api_url="https://10.106.103.1:1", node_id=WG.node_id)
    m = Membership(config, {"control_plane_endpoint": "127.0.0.1:51820"}, files,
                   clock=lambda: now[0])
    assert m.tunnel_silent() is False  # nothing listens on 127.0.0.1:1
    first = m._last_probe
    now[0] += PROBE_EVERY_SEC / 2
    assert m.tunnel_silent() is False and m._last_probe == first  # not probed again yet
    now[0] += PROBE_EVERY_SEC
    assert m.tunnel_silent() is False and m._last_probe == now[0]
    assert not m.removed.is_set()
