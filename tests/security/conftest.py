"""Fixtures for the security tests: an admin API client on a fresh control plane."""

from __future__ import annotations

from typing import Any

import pytest

from nimbus.client import ApiClient
from tests.harness import Server
from tests.security.helpers import operator


@pytest.fixture
def ops(server: Server, admin: dict[str, Any]) -> ApiClient:
    """The bootstrap admin, signing every request with HMAC."""
    return operator(server, admin)
