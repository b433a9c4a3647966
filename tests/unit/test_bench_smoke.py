"""The benchmark suite's own plumbing (budgets, percentiles, the seeded store); never timed."""

from __future__ import annotations

import json

from bench.__main__ import merge_into_saved, render_md, render_text, table
from bench.common import Result, percentile, seed_nodes
from nimbus.store import Store


def test_result_verdicts_follow_the_budget_direction():
    assert Result("rate", 1200, "req/s", 1000, ">=").passed is True
    assert Result("rate", 900, "req/s", 1000, ">=").passed is False
    assert Result("latency", 80, "ms", 100, "<=").passed is True
    assert Result("latency", 120, "ms", 100, "<=").passed is False
    assert Result("info", 1.0, "s", None).passed is None
    assert Result("did not run", None, "", 5).passed is None


def test_percentile_is_nearest_rank_on_sorted_values():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) in (50.0, 51.0)
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0


def test_tables_show_every_result_with_its_verdict():
    results = [Result("heartbeats", 1500, "heartbeats/s", 1000, ">="),
               Result("rss", 250, "MB", 200, "<=", note="too big")]
    rows = table(results, quick=False)
    text = render_text(rows)
    assert "PASS" in text and "FAIL" in text
    meta = {"quick": False, "when": "now", "host": "h", "cpus": 2, "python": "3.11",
            "load_before": [0, 0, 0], "load_after": [0, 0, 0]}
    md = render_md(rows, [r.as_dict() for r in results], meta)
    assert "| rss | 250 MB | <= 200 MB | FAIL |" in md and "too big" in md


def test_a_partial_run_replaces_only_its_own_rows_of_the_saved_full_run(tmp_path):
    meta = {"quick": False, "when": "then", "host": "h", "cpus": 2, "python": "3.11",
            "load_before": [0, 0, 0], "load_after": [0, 0, 0]}
    full = [Result("heartbeats", 1500, "heartbeats/s", 1000, ">="),
            Result("cli", 50, "ms", 40, "<=")]
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps({"meta": meta, "results": [r.as_dict() for r in full]}))
    now = {**meta, "when": "now", "load_before": [1, 1, 1]}
    kept, merged, rows = merge_into_saved(now, [Result("cli", 30, "ms", 40, "<=").as_dict()],
                                          ["cli"], saved)
    assert [(r["name"], r["figure"]) for r in merged] == [("heartbeats", 1500), ("cli", 30)]
    assert kept["when"] == "then" and kept["updated"][0]["only"] == ["cli"]
    md = render_md(rows, merged, kept)
    assert "| cli | 30 ms | <= 40 ms | PASS |" in md and "--only cli` at now" in md


def test_seeded_nodes_are_joined_with_unique_overlay_addresses(tmp_path):
    seed_nodes(tmp_path, 600)
    store = Store(tmp_path / "store")
    nodes = store.read("nodes")
    assert len(nodes) == 600 and len(store.read("runtime")) == 600
    ips = [n["wireguard_ip"] for n in nodes.values()]
    assert len(set(ips)) == 600 and "10.106.0.1" not in ips
    assert all(not ip.endswith((".0", ".255")) for ip in ips)
    assert all(n["state"] == "active" for n in nodes.values())
    json.dumps(nodes)  # plain JSON, as the server expects
