"""nimbus/cli/output.py: tables and key/value output, escaped whatever the server sends."""

from __future__ import annotations

from nimbus.cli.output import cell, table


def test_a_clean_table_is_aligned_and_unchanged():
    text = table([{"id": "n1", "name": "web", "last_seen": 1.8e9, "ok": True, "x": None},
                  {"id": "n22", "name": "db", "last_seen": None, "ok": False, "x": [1]}],
                 ["id", "name", "last_seen", "ok", "x"])
    assert text.splitlines() == [
        "ID   NAME  LAST_SEEN            OK   X",
        "n1   web   2027-01-15 08:00:00  yes  -",
        "n22  db    -                    no   [1]",
    ]


def test_hostile_cells_are_escaped_and_the_columns_still_line_up():
    rows = [{"a": "evil\x1b[2J", "b": "\u202eexe.txt"}, {"a": "ok", "b": "fine"}]
    lines = table(rows, ["a", "b"]).splitlines()
    assert "\x1b" not in "".join(lines) and "\u202e" not in "".join(lines)
    assert lines[1] == "evil\\x1b[2J  \\u202eexe.txt"
    assert lines[2].index("fine") == lines[1].index("\\u202e")


def test_cells_of_every_type():
    assert cell("a\x07b") == "a\\x07b"
    assert cell({"k": "\x1b"}) == '{"k":"\\u001b"}'
    assert cell(3) == "3" and cell(None) == "-"
