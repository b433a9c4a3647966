"""Fixtures: a fresh control plane per test, the real CLI, an admin."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Cli, Server, bootstrap_admin


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In CI (root), a root test must run: turn its skip into a failure."""
    del config, items


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


def in_ci() -> bool:
    return os.environ.get("CI") == "true"
