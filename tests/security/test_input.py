"""Input validation: IDs, names, IPs, config ranges, body size; nothing escapes the store."""

from __future__ import annotations

import os
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor

import pytest

from nimbus import wire
from nimbus.config import ServerConfig, load
from nimbus.errors import BadRequest, ConfigError
from tests.security.helpers import add_node, operator, raw

JSON = {"Content-Type": "application/json"}
BAD_NAMES = ["a/b", "..", "../etc", "a\x00b", "a\nb", "trailing-newline\n", "tab\there",
             "x" * 64, "", " lead", "-dash", "ünïcode", "a b"]
BAD_IPS = ["999.1.1.1", "1.2.3.4/24", "localhost", "1.2.3.4\x00", "", "1.2.3", "::g",
           "1.2.3.4 ", "x" * 100]
BAD_PATH_IDS = ["..", "%2e%2e", "..%2F..%2Fetc%2Fpasswd", "node-%00", "node-0123456789abcdeg",
                "node-0123456789abcdef%2F..", "node-0123456789abcdef%0a", "%0a", "a" * 300,
                "NODE-0123456789ABCDEF"]


def _snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[p] = os.stat(p).st_mtime_ns
    return out


def test_names_and_ips_are_validated(server, ops):
    import json

    for name in BAD_NAMES:
        body = json.dumps({"username": name}).encode()
        assert raw(server, "POST", "/v1/iam/users", body,
                   {**JSON, **_sign(ops, "POST", "/v1/iam/users", body)})[0] == 400, name
        with pytest.raises(BadRequest):
            ops.request("POST", "/v1/nodes", {"ip_address": "192.0.2.1", "name": name})
    for ip in BAD_IPS:
        with pytest.raises(BadRequest):
            ops.request("POST", "/v1/nodes", {"ip_address": ip})
    for bad in (1, None, True, ["192.0.2.1"], {"ip": 1}):
        with pytest.raises(BadRequest):
            ops.request("POST", "/v1/nodes", {"ip_address": bad})
    with pytest.raises(BadRequest):
        ops.request("POST", "/v1/nodes", {"ip_address": "192.0.2.1", "extra": 1})
    assert ops.request("GET", "/v1/nodes") == []


def _sign(ops, method, path, body):
    return ops.auth.headers(method, path, body, ops.clock())


@pytest.mark.parametrize("prefix", ["/v1/nodes/", "/v1/iam/users/", "/v1/internal/tasks/"])
def test_path_ids_cannot_escape_or_break_anything(server, ops, prefix):
    before = _snapshot(server.data_dir)
    for bad in BAD_PATH_IDS:
        for method in ("GET", "DELETE"):
            path = prefix + bad
            status, _, body = raw(server, method, path, headers=_sign(ops, method, path, b""))
            assert 400 <= status < 500, (method, path, status, body)
    after = _snapshot(server.data_dir)
    # The audit log and the replay journal (every signed request's nonce) are meant to grow.
    changed = {p for p in after if after[p] != before.get(p)
               and not p.startswith(str(server.data_dir / "replay") + os.sep)} - {
        str(server.data_dir / "audit.log")}
    assert not changed, changed
    assert sorted(os.listdir(server.data_dir / "store")) == sorted(
        os.listdir(server.data_dir / "store"))


def test_ids_are_strictly_shaped():
    for kind, good in (("node", "node-0123456789abcdef"), ("user", "user-0123456789abcdef"),
                       ("task", "task-0123456789abcdef"), ("key", "NBUS0123456789ABCDEF")):
        assert wire.check_id(kind, good) == good
        for bad in (good + "\n", good[:-1] + "/", "../" + good, good + "\x00", good * 2, 42):
            with pytest.raises(BadRequest):
                wire.check_id(kind, bad)


def test_request_bodies_over_one_mebibyte_are_refused(server, ops):
    big = b'{"username": "' + b"a" * (1024 * 1024) + b'"}'
    # Announced size: refused before a single byte is read, and before authentication.
    for path in ("/v1/iam/login", "/v1/nodes/join", "/v1/nodes"):
        status, _, _ = _send_head_only(server, path, len(big))
        assert status == 413, path
    # Chunked upload of the same body.
    status = _chunked(server, "/v1/iam/login", big)
    assert status == 413
    # Just under the limit is parsed normally (and refused for its content, not its size).
    small = b'{"username": "x", "password": "' + b"p" * 1000 + b'"}'
    assert raw(server, "POST", "/v1/iam/login", small, JSON)[0] == 401


def _send_head_only(server, path, length):
    import http.client

    from nimbus.client import tls_context

    conn = http.client.HTTPSConnection("127.0.0.1", server.port,
                                       context=tls_context(server.ca_pem()), timeout=30)
    conn.putrequest("POST", path)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    resp = conn.getresponse()
    out = resp.status, dict(resp.getheaders()), resp.read()
    conn.close()
    return out


def _chunked(server, path, body):
    ctx = ssl.create_default_context(cadata=server.ca_pem())
    with socket.create_connection(("127.0.0.1", server.port)) as raw_sock, \
            ctx.wrap_socket(raw_sock, server_hostname="127.0.0.1") as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        try:
            for i in range(0, len(body), 65536):
                part = body[i:i + 65536]
                sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer and close before the upload ends
        reply = sock.recv(4096)
    return int(reply.split(b" ", 2)[1])


@pytest.mark.parametrize("settings", [
    {"wireguard_subnet": "10.0.0.0/8"}, {"wireguard_subnet": "10.0.0.0/33"},
    {"wireguard_subnet": "10.0.0.1/24"}, {"wireguard_subnet": "fd00::/64"},
    {"wireguard_subnet": "not a net"}, {"wireguard_port": 0}, {"wireguard_port": 65536},
    {"wireguard_port": True}, {"listen": "127.0.0.1:99999"}, {"listen": "nohost"},
    {"public_address": "not-an-ip"}, {"interface": "../etc"}, {"interface": "a" * 16},
    {"heartbeat_interval_sec": 0}, {"join_token_ttl_sec": 0},
    {"node_cert_lifetime_sec": 10}, {"tls_cert": "/x.pem"},
])
def test_config_values_are_range_checked(settings):
    with pytest.raises(ConfigError):
        ServerConfig(**settings).validate()


def test_unknown_config_settings_are_refused(tmp_path):
    path = tmp_path / "api.toml"
    path.write_text('listen = "127.0.0.1:8443"\nwireguard_subent = "10.0.0.0/24"\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        load(ServerConfig, path, path)


def test_parallel_node_creation_never_duplicates_overlay_ips(server, admin):
    def create(i: int) -> str:
        client = operator(server, admin)
        node, _, _ = add_node(client, ip=f"198.51.100.{i + 1}", name=f"par-{i}")
        return node["wireguard_ip"]

    with ThreadPoolExecutor(max_workers=30) as pool:
        ips = list(pool.map(create, range(30)))
    assert len(set(ips)) == 30
    assert "10.106.103.1" not in ips
    assert sorted(ips, key=lambda ip: int(ip.rsplit(".", 1)[1])) == [
        f"10.106.103.{i}" for i in range(2, 32)]
