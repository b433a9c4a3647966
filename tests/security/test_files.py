"""Files on disk: keys, secrets and the store are private, and start-up refuses unsafe ones."""

from __future__ import annotations

import os
import stat
import time

import pytest

from nimbus.errors import ConfigError
from nimbus.server.ca import SECRET_FILES, KeyMaterial
from tests.security.helpers import add_node, join

PUBLIC = {"ca.crt", "server.crt"}  # certificates only; everything else is private


def _modes(root):
    for dirpath, _dirs, files in os.walk(root):
        yield dirpath, stat.S_IMODE(os.stat(dirpath).st_mode), True
        for f in files:
            p = os.path.join(dirpath, f)
            yield p, stat.S_IMODE(os.stat(p).st_mode), False


def test_every_secret_and_store_file_is_0600_in_0700_dirs(server, ops, tmp_path):
    _, fields, _ = add_node(ops)
    node = join(server, fields, tmp_path / "n")
    node.client(server).request("POST", "/v1/internal/heartbeat", {})
    ops.request("POST", "/v1/iam/users", {"username": "frank"})
    server.stop()  # flushes runtime data too
    seen = set()
    for path, mode, is_dir in _modes(server.data_dir):
        seen.add(os.path.basename(path))
        if is_dir:
            assert mode == 0o700, (path, oct(mode))
        elif os.path.basename(path) in PUBLIC:
            assert mode & 0o022 == 0, (path, oct(mode))
        else:
            assert mode == 0o600, (path, oct(mode))
    assert {"ca.key", "server.key", "jwt.key", "store.key", "wg.key", "audit.log",
            "users.json", "keys.json", "nodes.json"} <= seen


@pytest.mark.parametrize("name", [*SECRET_FILES, "store/users.json", "store/keys.json"])
def test_start_up_refuses_readable_secrets_and_says_how_to_fix_it(tmp_path, name):
    data = tmp_path / "data"
    KeyMaterial(data, time.time())
    from nimbus.store import Store

    Store(data / "store")
    target = data / name
    if not target.exists():
        target.write_text("x\n")
    os.chmod(target, 0o644)
    with pytest.raises(ConfigError) as err:
        KeyMaterial(data, time.time())
    assert f"chmod 600 {target}" in err.value.message


def test_real_server_refuses_to_start_with_a_readable_key(server_factory):
    srv = server_factory()
    srv.stop()
    os.chmod(srv.data_dir / "ca.key", 0o644)
    with pytest.raises(RuntimeError) as err:
        srv.start()
    assert f"chmod 600 {srv.data_dir / 'ca.key'}" in str(err.value)
    os.chmod(srv.data_dir / "ca.key", 0o600)
    srv.start()
