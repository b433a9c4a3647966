"""refs.find: a record by id or by name, NotFound naming the noun (and never echoing much)."""

from __future__ import annotations

import pytest

from nimbus.errors import NotFound
from nimbus.server import refs

RECORDS = {"vol-1": {"id": "vol-1", "name": "data"}, "vol-2": {"id": "vol-2", "name": "vol-1x"}}


def test_by_id_first_then_by_name():
    assert refs.find(RECORDS, "vol-1", "volume")["name"] == "data"
    assert refs.find(RECORDS, "data", "volume")["id"] == "vol-1"


def test_unknown_is_not_found_with_a_bounded_echo():
    with pytest.raises(NotFound) as err:
        refs.find(RECORDS, "x" * 500, "volume")
    assert str(err.value.message).startswith("no volume 'xxx") and len(err.value.message) < 90
