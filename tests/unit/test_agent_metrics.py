"""Agent metrics: /proc parsers, CPU deltas, disk, and outbound IP detection."""

from __future__ import annotations

import os

import pytest

from nimbus.agent import metrics

STAT = """cpu  100 0 50 800 50 0 0 0 0 0
cpu0 50 0 25 400 25 0 0 0 0 0
intr 12345
"""

MEMINFO = """MemTotal:        2000000 kB
MemFree:          500000 kB
MemAvailable:    1500000 kB
Buffers:           10000 kB
"""


def test_cpu_times_count_iowait_as_idle():
    assert metrics.parse_cpu_times(STAT) == (150, 1000)


def test_cpu_times_without_aggregate_line_is_an_error():
    with pytest.raises(ValueError):
        metrics.parse_cpu_times("cpu0 1 2 3 4\n")


def test_cpu_usage_is_the_delta_between_samples():
    samples = iter([STAT, "cpu  200 0 100 850 50 0 0 0 0 0\n"])
    sampler = metrics.CpuSampler(read=lambda: next(samples))
    assert sampler.usage() == 0.15  # since boot on the first call
    assert sampler.usage() == pytest.approx(150 / 200)


def test_cpu_usage_stays_between_zero_and_one_on_a_counter_reset():
    samples = iter([STAT, STAT.replace("800", "10")])
    sampler = metrics.CpuSampler(read=lambda: next(samples))
    sampler.usage()
    assert 0.0 <= sampler.usage() <= 1.0


def test_meminfo_used_is_total_minus_available_in_bytes():
    assert metrics.parse_meminfo(MEMINFO) == {"total": 2000000 * 1024, "used": 500000 * 1024}


def test_meminfo_without_memavailable_falls_back_to_free_buffers_cached():
    text = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 100 kB\nCached: 300 kB\n"
    assert metrics.parse_meminfo(text) == {"total": 1000 * 1024, "used": 500 * 1024}


def test_disk_usage_of_root_is_sane():
    disk = metrics.disk_usage("/")
    assert disk["total"] > 0 and 0 <= disk["used"] <= disk["total"]


def test_detect_ip_towards_loopback_sends_nothing_and_finds_loopback():
    assert metrics.detect_ip("127.0.0.1", 9) == "127.0.0.1"


def test_detect_ip_of_an_unresolvable_host_is_none():
    assert metrics.detect_ip("no-such-host.invalid", 9) is None


def test_collect_builds_a_heartbeat_the_api_accepts():
    from nimbus import wire
    body = metrics.collect(metrics.CpuSampler(), ("127.0.0.1", 8443), "0.1.0")
    assert wire.validate(body, wire.HEARTBEAT) == body
    assert body["cpu"]["count"] == os.cpu_count()
    assert "ip_address" not in body  # loopback is no endpoint peers could use
    assert body["memory"]["total"] >= body["memory"]["used"] > 0


def test_hostname_with_characters_the_api_refuses_is_left_out(monkeypatch):
    monkeypatch.setattr(metrics.socket, "gethostname", lambda: "bad host!")
    assert metrics.hostname() is None
