"""NFS volumes against a real server: hostile names, folders and refs change nothing; only an
admin creates or deletes; a node that cannot serve NFS is refused with what to install."""

from __future__ import annotations

import pytest

from nimbus.client import ApiClient, HmacAuth
from nimbus.errors import BadRequest, Conflict, Forbidden, NotFound
from tests.security.helpers import add_node, join, raw, store_doc

BAD_NAMES = ["", "A", "-a", "a_b", "a.b", "a/b", "../x", "a\x00b", "a\nb", "x" * 64, "ä",
             " a", "a;rm -rf /"]
BAD_FOLDERS = ["relative", "./x", "/", "//", "/srv/../etc", "/srv/./x", "/srv//x", "/etc",
               "/etc/ganesha", "/proc/self", "/usr/lib", "/var/lib/docker", '/srv/a"b',
               "/srv/a;b", "/srv/a}b", "/srv/a\nb", "/srv/a#b", "/srv/" + "x" * 1100]


@pytest.fixture
def world(server, ops, tmp_path):
    """n1 (reports ganesha), n2 (does not), and the swarm web."""
    nodes = {}
    for i, (name, tools) in enumerate((("n1", {"ganesha": "4.3"}), ("n2", {}))):
        _, fields, _ = add_node(ops, ip=f"192.0.2.{30 + i}", name=name)
        joined = join(server, fields, tmp_path / name)
        joined.client(server).request("POST", "/v1/internal/heartbeat",
                                      {"tools": tools} if tools else {})
        nodes[name] = joined
    ops.request("POST", "/v1/swarms", {"name": "web"})
    return nodes


def _create(ops, **body):
    return ops.request("POST", "/v1/volumes", {"name": "data", "node": "n1", "swarm": "web",
                                               **body})


def _unchanged(server, ops, tasks_before):
    assert ops.request("GET", "/v1/volumes") == []
    assert store_doc(server, "volumes") == {}
    assert store_doc(server, "tasks") == tasks_before


# One server for many cases (a server and two joins per case would take minutes).
def test_bad_names_and_folders_are_refused_and_change_nothing(server, ops, world):
    before = store_doc(server, "tasks")
    cases = [{"name": n} for n in BAD_NAMES] + [{"folder": f} for f in BAD_FOLDERS]
    for body in cases:
        with pytest.raises(BadRequest) as err:
            _create(ops, **body)
        assert "\n" not in str(err.value), body
    _unchanged(server, ops, before)


REFUSALS = [
    ({"node": "nope"}, NotFound, "no node 'nope'"),
    ({"node": "node-0123456789abcdef"}, NotFound, "no node"),
    ({"node": "../n1"}, BadRequest, "invalid node"),
    ({"swarm": "nope"}, NotFound, "no swarm 'nope'"),
    ({"node": "n2"}, Conflict, "apt install nfs-ganesha nfs-ganesha-vfs"),
    ({"root_squash": "no"}, BadRequest, "root_squash"),
    ({"export_path": "/etc"}, BadRequest, "export_path"),  # unknown field
    ({"clients": ["0.0.0.0/0"]}, BadRequest, "clients"),  # the client list is not input
]


def test_unknown_refs_and_fields_are_one_clear_error(server, ops, world):
    before = store_doc(server, "tasks")
    for body, error, words in REFUSALS:
        with pytest.raises(error, match=words):
            _create(ops, **body)
    _unchanged(server, ops, before)


def test_only_an_admin_creates_or_deletes(server, ops, world):
    user = ops.request("POST", "/v1/iam/users", {"username": "reader"})
    key = ops.request("POST", f"/v1/iam/users/{user['id']}/keys", {})
    reader = ApiClient(server.url, server.ca_pem(),
                       auth=HmacAuth(key["access_key"], key["secret_key"]))
    with pytest.raises(Forbidden):
        _create(reader)
    with pytest.raises(Forbidden):
        reader.request("DELETE", "/v1/volumes/data")
    assert reader.request("GET", "/v1/volumes") == []


def test_hostile_refs_are_not_found_never_a_crash(server, ops, world):
    for ref in ("..", "%2e%2e", "..%2F..%2Fetc%2Fpasswd", "a%00b", "x" * 300):
        for method in ("GET", "DELETE"):
            with pytest.raises((NotFound, BadRequest)):
                ops.request(method, f"/v1/volumes/{ref}")


def test_a_node_cannot_reach_the_volume_api(server, world):
    cert = (world["n1"].cert_file, world["n1"].key_file)
    status, _, _ = raw(server, "GET", "/v1/volumes", cert=cert)
    assert status == 401
