"""Integration fixtures: a pool of real agent processes, stopped by PID after each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agents import AgentPool


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[AgentPool]:
    pool = AgentPool(tmp_path / "agents")
    yield pool
    pool.close()
