"""The agent's NFS side without a server: folders on a real file system, the ganesha
lifecycle against a recording supervisor, Docker volumes against a fake engine."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nimbus.agent import nfs
from nimbus.agent.tasks import TaskContext
from nimbus.agent.tasks import volumes as handlers
from nimbus.nfs import volumes


class Supervisor:
    """Records what the handler asks of the real supervisor."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.state: dict[str, dict[str, Any]] = {}

    def ensure(self, name: str, argv: list[str], **kw: Any) -> None:
        self.calls.append(("ensure", name, argv[0]))
        self.state[name] = {"state": "running"}

    def signal(self, name: str, sig: int) -> bool:
        self.calls.append(("signal", name, sig))
        return True

    def stop(self, name: str) -> None:
        self.calls.append(("stop", name))
        self.state.pop(name, None)

    def status(self) -> dict[str, dict[str, Any]]:
        return dict(self.state)


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TaskContext:
    monkeypatch.setattr(nfs, "wait_listening", lambda *a, **k: None)
    monkeypatch.setattr(nfs, "which", lambda name: "/usr/bin/ganesha.nfsd")
    data = tmp_path / "data"
    data.mkdir()
    return TaskContext("node-x", data_dir=data, overlay_ip="10.106.103.2",
                       supervisor=Supervisor(), docker_host="unix:///nonexistent.sock")


def export(name: str, folder: str | None = None, export_id: int = 1, **kw: Any) -> dict:
    return {"name": name, "export_id": export_id, "folder": folder,
            "clients": ["10.106.103.3"], "root_squash": True, **kw}


def sync(ctx: TaskContext, exports: list[dict], mounts: list[dict] | None = None) -> dict:
    payload = {"serve": {"bind_ip": "10.106.103.2", "exports": exports}, "mounts": mounts or []}
    return json.loads(handlers.sync(ctx, payload))


def test_the_default_folder_is_created_for_the_squashed_root(ctx):
    out = sync(ctx, [export("data")])
    folder = Path(ctx.data_dir) / "volumes" / "data"
    assert out["served"] == ["data"] and out["errors"] == {} and folder.is_dir()
    if os.geteuid() == 0:
        assert folder.stat().st_uid == 65534
    conf = (Path(ctx.data_dir) / "nfs" / "ganesha.conf").read_text()
    assert f'Path = "{folder}";' in conf and "Clients = 10.106.103.3;" in conf
    assert oct((Path(ctx.data_dir) / "nfs" / "ganesha.conf").stat().st_mode & 0o777) == "0o600"
    assert ctx.supervisor.calls == [("ensure", "ganesha", "/bin/sh")]


def test_a_changed_client_list_is_a_reload_and_the_last_export_a_stop(ctx):
    sync(ctx, [export("data")])
    sync(ctx, [export("data")])  # the same: no HUP
    sync(ctx, [export("data", clients=["10.106.103.4"])])
    sync(ctx, [])
    calls = [c[0] for c in ctx.supervisor.calls]
    assert calls == ["ensure", "ensure", "ensure", "signal", "stop"]
    assert ("signal", "ganesha", signal.SIGHUP) in ctx.supervisor.calls


def test_an_export_that_cannot_be_served_leaves_the_others(ctx, tmp_path):
    (tmp_path / "afile").write_text("x")
    os.symlink(ctx.data_dir, tmp_path / "sneaky")
    out = sync(ctx, [export("good", str(tmp_path / "good"), 1),
                     export("file", str(tmp_path / "afile"), 2),
                     export("own", str(ctx.data_dir), 3),
                     export("link", str(tmp_path / "sneaky"), 4),
                     export("inner", str(tmp_path / "good" / "sub"), 5)])
    assert out["served"] == ["good"]
    assert set(out["errors"]) == {"file", "own", "link", "inner"}
    assert "not a directory" in out["errors"]["file"]
    assert "data dir" in out["errors"]["own"] and "data dir" in out["errors"]["link"]
    assert "overlap" in out["errors"]["inner"]


def test_check_resolves_the_default_and_refuses_the_agents_files(ctx):
    out = json.loads(handlers.check(ctx, {"name": "data"}))
    assert out == {"folder": str(Path(ctx.data_dir) / "volumes" / "data"), "exists": False}
    for bad in (str(ctx.data_dir), str(Path(ctx.data_dir).parent),
                str(Path(ctx.data_dir) / "nfs"), str(Path(ctx.data_dir) / "volumes")):
        with pytest.raises(nfs.NfsError, match="data dir"):
            handlers.check(ctx, {"name": "x", "folder": bad})


def test_serving_another_address_than_our_own_is_refused(ctx):
    payload = {"serve": {"bind_ip": "10.106.103.9", "exports": [export("data")]}, "mounts": []}
    with pytest.raises(ValueError, match=r"overlay IP is 10\.106\.103\.2"):
        handlers.sync(ctx, payload)


def test_without_ganesha_the_error_says_what_to_install(ctx, monkeypatch):
    monkeypatch.setattr(nfs, "which", lambda name: None)
    out = sync(ctx, [export("data")])
    assert out["served"] == [] and "apt install nfs-ganesha" in out["errors"]["data"]


def test_without_docker_the_mounts_say_so(ctx):
    out = sync(ctx, [], [{"name": "data", "server_ip": "10.106.103.2", "export_path": "/data"}])
    assert out["mounts"] == {"data": "no Docker Engine on this node"}


@dataclass
class Done:
    stdout: str = ""


class Engine:
    """Docker volumes in a dict; labelled ones are ours."""

    def __init__(self, existing: dict[str, dict[str, Any]]) -> None:
        self.vols = existing
        self.argvs: list[list[str]] = []

    def docker(self, args: list[str]) -> Done:
        self.argvs.append(args)
        if args[:2] == ["volume", "ls"]:
            names = [n for n, v in self.vols.items()
                     if "--filter" not in args or volumes.LABEL in v["Labels"]]
            return Done("\n".join(names))
        if args[:2] == ["volume", "inspect"]:
            return Done(json.dumps([{"Name": n, **self.vols[n]} for n in args[2:]]))
        if args[:2] == ["volume", "rm"]:
            self.vols.pop(args[2])
        if args[:2] == ["volume", "create"]:
            opts = dict(a.split("=", 1) for a in args[args.index("--driver"):] if "=" in a
                        and not a.startswith(volumes.LABEL))
            self.vols[args[-1]] = {"Labels": {volumes.LABEL: "x"}, "Options": opts}
        return Done()


def test_docker_volumes_are_created_recreated_and_only_ours_removed():
    opts = volumes.docker_options("10.106.103.2", "/keep")
    eng = Engine({
        "nimbus-keep": {"Labels": {volumes.LABEL: "keep"}, "Options": opts},
        "nimbus-moved": {"Labels": {volumes.LABEL: "moved"}, "Options": {"o": "addr=old"}},
        "nimbus-gone": {"Labels": {volumes.LABEL: "gone"}, "Options": {}},
        "nimbus-theirs": {"Labels": {}, "Options": {}},
        "postgres-data": {"Labels": {}, "Options": {}},
    })
    wanted = [("keep", "10.106.103.2", "/keep"), ("moved", "10.106.103.2", "/moved"),
              ("new", "10.106.103.2", "/new"), ("theirs", "10.106.103.2", "/theirs")]
    ours = handlers._ours(eng, [volumes.docker_name(n) for n, _, _ in wanted])
    result = {n: handlers._ensure_volume(eng, ours, n, ip, path) for n, ip, path in wanted}
    assert result["keep"] == "ok" and result["moved"] == "ok" and result["new"] == "ok"
    assert "nimbus did not create" in result["theirs"]
    assert eng.vols["nimbus-moved"]["Options"] == volumes.docker_options("10.106.103.2",
                                                                          "/moved")
    assert eng.vols["nimbus-new"]["Options"]["type"] == "nfs"
    assert not any(a[:2] == ["volume", "create"] and a[-1] == "nimbus-keep" for a in eng.argvs)
    assert handlers._remove(eng, "nimbus-gone", "removed") == "removed"
    assert "postgres-data" in eng.vols and "nimbus-theirs" in eng.vols
