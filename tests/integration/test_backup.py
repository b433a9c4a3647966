"""`nimbus backup` while the server runs and writes, `nimbus restore`: everything works again."""

from __future__ import annotations

import json
import os
import stat
import tarfile
import threading
import time

import pytest

from tests.harness import Cli, Server
from tests.integration.agents import add_node, control_plane, node_status, wait_for


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_backup_of_a_running_server_restores_nodes_users_and_keys(
        server_factory, cli: Cli, agents, tmp_path):
    server = control_plane(server_factory, cli)
    node_id, token = add_node(cli)
    agent = agents.join(token)
    wait_for(lambda: node_status(cli, node_id) == "ready", "node ready")
    user = cli.json("iam", "create-user", "--username", "ops")
    key = cli.json("iam", "create-key", "--user-id", user["id"])
    ops = Cli(tmp_path / "ops-home")
    ops.run("configure", "--api-url", server.url, "--access-key", key["access_key"],
            "--tls-ca", str(server.data_dir / "ca.crt"),
            env={"NIMBUS_SECRET_KEY": key["secret_key"]})

    # Writes keep landing while the backup is taken (users created in a loop).
    stop = threading.Event()
    created: list[str] = []

    def writer() -> None:
        while not stop.is_set():
            result = cli.run("iam", "create-user", "--username", f"w{len(created)}",
                             check=False)
            if result.returncode == 0:
                created.append(result.stdout)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        archive = tmp_path / "backup.tgz"
        out = cli.run("backup", "--output", str(archive), "--data-dir", str(server.data_dir))
    finally:
        stop.set()
        thread.join()
    assert "written to" in out.stdout and _mode(archive) == 0o600
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"ca.key", "ca.crt", "jwt.key", "store.key", "audit.log", "store/meta.json",
            "store/users.json", "store/keys.json", "store/nodes.json"} <= names
    assert "endpoint.json" not in names and "store/store.lock" not in names

    # The original host is gone: restore elsewhere and serve on the same address.
    server.kill()
    restored = tmp_path / "restored"
    refused = cli.run("restore", "--input", str(archive), "--data-dir", str(server.tmp),
                      check=False)
    assert refused.returncode != 0 and "not empty" in refused.stderr
    out = cli.run("restore", "--input", str(archive), "--data-dir", str(restored / "data"))
    assert "restored" in out.stdout
    assert _mode(restored / "data") == 0o700 and _mode(restored / "data" / "ca.key") == 0o600
    new = Server(restored, {"listen": f"127.0.0.1:{server.port}", "heartbeat_interval_sec": 1})
    new.port, new.url = server.port, server.url
    new.start()
    try:
        users = {u["username"] for u in cli.json("iam", "list-users")}  # admin's key works
        assert {"admin", "ops"} <= users
        assert ops.json("iam", "list-keys", "--user-id", user["id"])  # ops' key works
        since = time.time()

        def seen_again():
            node = cli.json("node", "describe", node_id)
            return node["status"] == "ready" and (node["last_seen"] or 0) > since

        wait_for(seen_again, "the agent's heartbeat reaching the restored server")
        assert agent.alive()
        audit = (restored / "data" / "audit.log").read_text().splitlines()
        assert all(json.loads(line) for line in audit)  # whole lines only
    finally:
        new.stop()


def test_restore_refuses_a_tampered_or_foreign_archive(tmp_path, cli: Cli):
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"not a tar")
    result = cli.run("restore", "--input", str(bad), "--data-dir", str(tmp_path / "d"),
                     check=False)
    assert result.returncode == 6 and "not a readable Nimbus backup" in result.stderr
    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        (tmp_path / "x").write_text("x")
        tar.add(tmp_path / "x", arcname="../escape")
    result = cli.run("restore", "--input", str(evil), "--data-dir", str(tmp_path / "d"),
                     check=False)
    assert result.returncode == 6 and "unexpected entry" in result.stderr
    assert not (tmp_path / "escape").exists() and not (tmp_path / "d").exists()


def test_restore_refuses_an_archive_whose_file_does_not_match_its_checksum(
        server: Server, cli: Cli, admin, tmp_path):
    archive = tmp_path / "b.tgz"
    cli.run("backup", "--output", str(archive), "--data-dir", str(server.data_dir))
    forged = tmp_path / "forged.tgz"
    with tarfile.open(archive) as src, tarfile.open(forged, "w:gz") as dst:
        for member in src:
            data = src.extractfile(member).read()
            if member.name == "store/users.json":
                data = data.replace(b'"admin":true', b'"admin":false')
            member.size = len(data)
            import io

            dst.addfile(member, io.BytesIO(data))
    result = cli.run("restore", "--input", str(forged), "--data-dir", str(tmp_path / "d"),
                     check=False)
    assert result.returncode == 6 and "users.json does not match its checksum" in result.stderr


@pytest.mark.parametrize("args", [["--data-dir", "/nonexistent-h10"]])
def test_backup_of_a_dir_without_a_control_plane_is_one_line(cli: Cli, tmp_path, args):
    result = cli.run("backup", "--output", str(tmp_path / "b.tgz"), *args, check=False)
    assert result.returncode == 6 and "holds no control plane" in result.stderr
    assert "Traceback" not in result.stderr
