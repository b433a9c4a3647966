"""What an agent reports it can run (heartbeat `tools`): every module's probes, never a crash."""

from __future__ import annotations

from nimbus import wire
from nimbus.agent import tasks


def test_probes_report_found_tools_and_skip_missing_or_broken_ones(monkeypatch):
    def broken(config):
        raise OSError("exec format error")

    monkeypatch.setattr(tasks, "TOOLS", {"weed": lambda c: "4.48", "ganesha": lambda c: None,
                                         "odd": broken, "long": lambda c: "9" * 100})
    found = tasks.probe_tools(config=None)
    assert found == {"weed": "4.48", "long": "9" * 64}
    assert wire.build(wire.HEARTBEAT, tools=found)["tools"] == found  # the server accepts it


def test_no_two_modules_claim_one_tool():
    names = [n for m in tasks.MODULES for n in getattr(m, "TOOLS", {})]
    assert len(names) == len(set(names))
