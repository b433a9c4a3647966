"""In-memory request counters and latency histograms, rendered as Prometheus text."""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, list[float]] = {}
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.counters: dict[str, int] = defaultdict(int)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, method, status)] += 1
            buckets = self.latency.setdefault(route, [0] * (len(BUCKETS) + 1))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
                    break
            else:
                buckets[-1] += 1
            self.latency_sum[route] += seconds

    def inc(self, name: str, by: int = 1) -> None:
        with self._lock:
            self.counters[name] += by

    def render(self, gauges: dict[str, dict[str, float]]) -> str:
        lines = ["# TYPE nimbus_http_requests_total counter"]
        with self._lock:
            for (route, method, status), n in sorted(self.requests.items()):
                lines.append(f'nimbus_http_requests_total{{route="{route}",method="{method}",'
                             f'status="{status}"}} {n}')
            lines.append("# TYPE nimbus_http_request_seconds histogram")
            for route, buckets in sorted(self.latency.items()):
                total = 0
                for bound, n in zip((*BUCKETS, float("inf")), buckets):
                    total += n
                    le = "+Inf" if bound == float("inf") else f"{bound:g}"
                    lines.append(f'nimbus_http_request_seconds_bucket{{route="{route}",'
                                 f'le="{le}"}} {total}')
                lines.append(f'nimbus_http_request_seconds_sum{{route="{route}"}} '
                             f"{self.latency_sum[route]:.6f}")
                lines.append(f'nimbus_http_request_seconds_count{{route="{route}"}} {total}')
            for name, n in sorted(self.counters.items()):
                lines.append(f"# TYPE nimbus_{name}_total counter")
                lines.append(f"nimbus_{name}_total {n}")
        for name, series in sorted(gauges.items()):
            lines.append(f"# TYPE nimbus_{name} gauge")
            for labels, value in sorted(series.items()):
                suffix = f"{{{labels}}}" if labels else ""
                lines.append(f"nimbus_{name}{suffix} {value:g}")
        return "\n".join(lines) + "\n"
