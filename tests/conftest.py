"""Fixtures: a fresh control plane per test, the real CLI, an admin."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Cli, Server, bootstrap_admin


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (root, WireGuard installed) a skipped root test is a failure, never a silent skip."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and item.get_closest_marker("root") is not None:
        report.outcome = "failed"
        report.longrepr = f"root test skipped in CI: {report.longrepr}"


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Server] = []

    def make(settings: dict[str, Any] | None = None, name: str = "cp",
             extra_args: list[str] | None = None) -> Server:
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        srv = Server(d, settings, extra_args)
        started.append(srv)
        return srv.start()

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def server(server_factory: Any) -> Server:
    return server_factory()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


@pytest.fixture
def admin(server: Server, cli: Cli) -> dict[str, Any]:
    return bootstrap_admin(server, cli)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs of this test's own (root), for disk-full tests on a real file system."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "nimbus-test-disk",
                    str(mnt)], check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def in_ci() -> bool:
    return os.environ.get("CI") == "true"
