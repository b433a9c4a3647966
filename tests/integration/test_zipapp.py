"""dist/nimbus.pyz: built by build.py, runs the control plane and the CLI, on a plain python3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.harness import PYZ, REPO, Cli, bootstrap_admin

SOURCES = [REPO / "build.py", REPO / "requirements.txt",
           *sorted((REPO / "nimbus").rglob("*.py"))]


def _stale() -> bool:
    if not PYZ.exists():
        return True
    built = PYZ.stat().st_mtime
    return any(p.stat().st_mtime > built for p in SOURCES if p.exists())


@pytest.fixture(scope="module")
def pyz(tmp_path_factory) -> Path:
    """Build once per session when missing or older than the sources (first time: minutes)."""
    if _stale():
        result = subprocess.run([sys.executable, str(REPO / "build.py")], cwd=REPO,
                                capture_output=True, text=True, timeout=1200, check=False)
        assert result.returncode == 0, f"build.py failed:\n{result.stdout}\n{result.stderr}"
        assert "built" in result.stdout
    assert PYZ.exists()
    return PYZ


@pytest.fixture
def pyz_env(pyz, monkeypatch, tmp_path_factory) -> Path:
    """Make the harness run the zipapp; one shiv extraction dir for the whole module."""
    shiv_root = tmp_path_factory.getbasetemp() / "shiv-root"
    monkeypatch.setenv("NIMBUS_TEST_PYZ", "1")
    monkeypatch.setenv("SHIV_ROOT", str(shiv_root))
    return pyz


def test_pyz_bundles_nimbus_and_its_dependencies(pyz):
    with zipfile.ZipFile(pyz) as z:
        names = set(z.namelist())
        env = json.loads(z.read("environment.json"))
    assert env["entry_point"] == "nimbus.__main__:main"
    for module in ("nimbus/__main__.py", "nimbus/server/app.py", "click/__init__.py",
                   "cryptography/__init__.py", "bottle.py", "cheroot/__init__.py",
                   "jwt/__init__.py", "tomli_w/__init__.py"):
        assert f"site-packages/{module}" in names, module
    assert not any("/tests/" in n and n.startswith("site-packages/nimbus") for n in names)
    assert not any("__pycache__" in n for n in names if n.startswith("site-packages/nimbus"))
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.access(pyz, os.X_OK)


def _plain_python() -> str:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).exists():
            return candidate
    pytest.skip("no system python3 outside the venv")


def test_help_on_a_plain_python3(pyz, tmp_path):
    python = _plain_python()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHIV_ROOT": str(tmp_path / "shiv")}
    run = [python, str(pyz), "--help"]
    first = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    assert "Commands:" in first.stdout and "serve" in first.stdout and "bootstrap" in first.stdout
    started = time.perf_counter()
    warm = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    elapsed = time.perf_counter() - started
    assert warm.returncode == 0 and warm.stdout == first.stdout
    print(f"warm `python3 nimbus.pyz --help`: {elapsed * 1000:.0f} ms")  # reported, not asserted
    version = subprocess.run([python, str(pyz), "version", "-o", "json"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert version.returncode == 0, version.stderr
    assert "client" in json.loads(version.stdout)


def test_bootstrap_iam_and_nodes_through_the_pyz(pyz_env, server_factory, tmp_path):
    server = server_factory()
    assert "nimbus.pyz" in " ".join(server.proc.args)
    cli = Cli(tmp_path / "pyz-home")
    assert "NIMBUS_TEST_PYZ" in cli.env
    admin = bootstrap_admin(server, cli)
    assert admin["api_url"] == server.url
    user = cli.json("iam", "create-user", "--username", "ops")
    key = cli.json("iam", "create-key", "--user-id", user["id"])
    assert key["access_key"].startswith("NBUS")
    cli.run("iam", "set-password", "--user-id", user["id"], "--password", "ops-password-1")
    token = cli.json("iam", "login", "--username", "ops", "--password", "ops-password-1")["token"]
    assert cli.json("--token", token, "node", "list") == []
    added = cli.json("node", "add", "--get-token", "--ip", "192.0.2.20", "--name", "pi-1")
    assert added["join_token"].startswith("nimbus-join-v1.")
    nodes = cli.json("node", "list")
    assert [(n["name"], n["status"]) for n in nodes] == [("pi-1", "pending")]
    r = cli.run("iam", "create-user", "--username", "ops", check=False)
    assert r.returncode == 5 and "Traceback" not in r.stderr
    assert server.stop() == 0


def test_build_is_reproducible_and_keeps_the_build_venv(pyz, tmp_path):
    """A second build reuses build/venv and build/deps and gives the same bytes."""
    out = tmp_path / "again.pyz"
    result = subprocess.run([sys.executable, str(REPO / "build.py"), "--output", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert "pip install" not in result.stdout  # nothing downloaded the second time
    if not _stale():
        assert out.read_bytes() == pyz.read_bytes()


def _newer_pythons() -> list[str]:
    found = {str(p) for p in Path("/usr/bin").glob("python3.1[2-9]")}
    found |= {str(p) for p in (Path.home() / ".pyenv" / "versions").glob("3.1[2-9]*/bin/python3")}
    return sorted(found)


@pytest.mark.parametrize("python", _newer_pythons() or [None])
def test_pyz_runs_crypto_commands_on_newer_pythons(pyz, tmp_path, python):
    """cffi's compiled module is per Python version; build.py bundles one for each."""
    if python is None:
        pytest.skip("no Python 3.12+ on this machine")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHIV_ROOT": str(tmp_path / "shiv")}
    r = subprocess.run([python, str(pyz), "bootstrap", "--data-dir", str(tmp_path / "data")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert "BEGIN CERTIFICATE" in json.loads(r.stdout)["tls_ca"]
