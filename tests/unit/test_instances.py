"""The host's registry of running control planes (what `nimbus bootstrap` consults)."""

from __future__ import annotations

import json
import subprocess
import sys

from nimbus.server import instances


def test_live_records_count_and_dead_ones_are_swept(tmp_path):
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "serve"])
    try:
        (tmp_path / f"{fake.pid}.json").write_text(json.dumps(
            {"pid": fake.pid, "data_dir": "/srv/cp", "api_url": "https://h:1"}))
        dead = subprocess.Popen(["true"])
        dead.wait()
        (tmp_path / f"{dead.pid}.json").write_text(json.dumps({"pid": dead.pid,
                                                               "data_dir": "/x"}))
        (tmp_path / "junk.json").write_text("{")
        live = instances.running(root=tmp_path)
        assert [r["data_dir"] for r in live] == ["/srv/cp"]
        assert not (tmp_path / f"{dead.pid}.json").exists()  # kill -9 leftovers are swept
        assert instances.others(tmp_path / "mine", root=tmp_path)[0]["pid"] == fake.pid
    finally:
        fake.kill()
        fake.wait()
    assert instances.running(root=tmp_path) == []


def test_a_server_using_my_data_dir_means_no_others(tmp_path):
    path = instances.register(tmp_path / "data", "https://h:1", root=tmp_path / "run")
    assert path is not None and (path.stat().st_mode & 0o777) == 0o600
    # This test process is no `serve`: only the record's format is checked here.
    assert json.loads(path.read_text())["data_dir"] == str((tmp_path / "data").resolve())
    instances.unregister(path)
    assert not path.exists()
