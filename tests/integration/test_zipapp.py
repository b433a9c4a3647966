"""dist/nimbus.pyz: built by build.py, runs the control plane and the CLI, on a plain python3."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.harness import PYZ, REPO, Cli, bootstrap_admin

SOURCES = [REPO / "build.py", REPO / "requirements-pyz.txt",
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
        outer = set(z.namelist())
        env = json.loads(z.read("environment.json"))
        main_py = z.read("__main__.py").decode()
        full_launcher = z.read("_nimbus_launcher.py").decode()
        with z.open("site-packages.zip") as f, zipfile.ZipFile(io.BytesIO(f.read())) as inner:
            names = set(inner.namelist())
    # Python reads the outer directory at every start: keep it to a handful of entries.
    assert len(outer) < 20 and not any(n.startswith("site-packages/") for n in outer)
    assert env["entry_point"] == "nimbus.__main__:main"
    for module in ("nimbus/__main__.py", "nimbus/server/app.py",
                   "cffi/__init__.py", "bottle.py", "cheroot/__init__.py", "jwt/__init__.py",
                   "click/__init__.py", "click/shell_completion.py",
                   "tomli_w/__init__.py", "tomli/__init__.py", "typing_extensions.py"):
        assert f"site-packages/{module}" in names, module
    assert not any("/tests/" in n and n.startswith("site-packages/nimbus") for n in names)
    assert not any("__pycache__" in n for n in names if n.startswith("site-packages/nimbus"))
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.access(pyz, os.X_OK)
    assert pyz.stat().st_size <= 20_000_000  # the budget for copying to every node
    # The launcher is ours (lean), stamped with shiv's build id and the targets built for.
    assert f'B = "{env["build_id"]}"' in main_py.replace("'", '"')
    assert f'BUILD_ID = "{env["build_id"]}"' in full_launcher.replace("'", '"')
    # Python compiles __main__.py at every start (no pyc in a zip): the warm path stays small.
    assert len(main_py) < 2500
    for machine in ("x86_64", "aarch64"):
        # One abi3 cryptography per machine; pure-Python packages only once.
        assert (f"site-packages/_nimbus_native/{machine}/cryptography/hazmat/bindings/"
                f"_rust.abi3.so") in names
        for minor in range(9, 15):
            so = f"site-packages/_cffi_backend.cpython-3{minor}-{machine}-linux-gnu.so"
            assert so in names, so
            assert f"-3{minor}-{machine}-linux-gnu.so" in main_py
    assert sum(n.endswith("cheroot/server.py") for n in names) == 1


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
    """A second build reuses build/venv and build/wheels and gives the same bytes."""
    out = tmp_path / "again.pyz"
    result = subprocess.run([sys.executable, str(REPO / "build.py"), "--output", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert "pip download" not in result.stdout  # nothing downloaded the second time
    assert "budget 20 MB" in result.stdout  # the size is printed
    if not _stale():
        assert out.read_bytes() == pyz.read_bytes()


def _isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No NIMBUS_CACHE/SHIV_ROOT: the launcher picks the directory itself."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path)}
    env.update(extra)
    return env


def test_two_first_runs_at_once_extract_once(pyz, tmp_path):
    python = _plain_python()
    env = _isolated_env(tmp_path, NIMBUS_CACHE=str(tmp_path / "cache"))
    procs = [subprocess.Popen([python, str(pyz), "version", "-o", "json"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1] for o in outputs]
    assert all(json.loads(o[0])["client"] for o in outputs)
    built = sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith("."))
    assert len(built) == 1 and built[0].startswith("nimbus_"), built  # no leftover temp dir


def _read_only_home_argv(home: Path, argv: list[str]) -> list[str]:
    """As root, a read-only bind mount in a private mount namespace; else chmod 0500."""
    if os.geteuid() != 0:
        home.chmod(0o500)
        return argv
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, str(home), *argv]


def test_read_only_home_falls_back_to_a_private_temp_dir(pyz, tmp_path):
    """systemd's ProtectHome=read-only: ~/.shiv cannot be made, so nimbus-<uid> in TMPDIR."""
    python = _plain_python()
    home = tmp_path / "home"
    home.mkdir()
    env = _isolated_env(tmp_path)
    r = subprocess.run(_read_only_home_argv(home, [python, str(pyz), "version"]), env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert "python" in r.stdout and "platform" in r.stdout
    assert not (home / ".shiv").exists()
    fallback = tmp_path / f"nimbus-{os.getuid()}"
    assert fallback.is_dir() and fallback.stat().st_mode & 0o777 == 0o700
    assert any(fallback.glob("nimbus_*/site-packages/nimbus/__init__.py"))


def test_a_fallback_dir_made_by_someone_else_is_never_used(pyz, tmp_path):
    """Another user could pre-create /tmp/nimbus-<uid> with code in it: refuse it."""
    python = _plain_python()
    planted = tmp_path / f"nimbus-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    (tmp_path / "file").write_text("")  # HOME below a file: ~/.shiv cannot be made
    env = _isolated_env(tmp_path, HOME=str(tmp_path / "file" / "home"))
    r = subprocess.run([python, str(pyz), "version"], env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 1 and not any(planted.iterdir())
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "cannot unpack itself" in r.stderr and "NIMBUS_CACHE" in r.stderr


def test_an_unsupported_python_gets_one_line(pyz, tmp_path):
    """CPython 3.8 (pyenv has it on the dev machines) is refused before anything is unpacked."""
    old = sorted(Path.home().glob(".pyenv/versions/3.[5-8].*/bin/python3"))
    if not old:
        pytest.skip("no Python older than 3.9 on this machine")
    env = _isolated_env(tmp_path, NIMBUS_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([str(old[-1]), str(pyz), "version"], env=env, capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "too old" in r.stderr and "CPython 3.9 to 3.14" in r.stderr
    assert "aarch64" in r.stderr and "glibc 2.17" in r.stderr
    assert not (tmp_path / "cache").exists()
