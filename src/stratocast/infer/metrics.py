"""Prometheus metrics of the operate process (``prometheus_client``).

Each ``OperateMetrics`` has its own registry (two operate loops in one process, or a test,
never share counters). Served only when asked (``operate --metrics-port``), on 127.0.0.1
unless another address is given: the metrics name products and paths, not for the world.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from stratocast.infer.cycle import CycleResult

_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class OperateMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.phase = Histogram(
            "stratocast_cycle_phase_seconds",
            "Time per cycle phase",
            ["product", "phase"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "stratocast_cycle_latency_seconds",
            "Cut-off to published",
            ["product"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.margin = Gauge(
            "stratocast_deadline_margin_seconds",
            "Deadline minus publication time, last cycle",
            ["product"],
            registry=r,
        )
        self.cycles = Counter(
            "stratocast_cycles", "Cycles run, by outcome", ["product", "status"], registry=r
        )
        self.misses = Counter(
            "stratocast_deadline_misses",
            "Cycles not published by their deadline (fallbacks included)",
            ["product"],
            registry=r,
        )
        self.obs_used = Gauge(
            "stratocast_observations_used",
            "Observation values in the last cycle's windows",
            ["product"],
            registry=r,
        )
        self.obs_late = Gauge(
            "stratocast_observations_late",
            "Reports of the last cycle's windows received after its cut-off",
            ["product"],
            registry=r,
        )
        self.model_load = Gauge(
            "stratocast_model_load_seconds",
            "Time to load a model (cold start)",
            ["checkpoint"],
            registry=r,
        )

    def record(self, r: CycleResult, latency_s: float) -> None:
        p = r.product
        self.cycles.labels(p, r.status).inc()
        if r.status == "already":
            return
        for phase, seconds in r.phases.items():
            self.phase.labels(p, phase).observe(seconds)
        self.latency.labels(p).observe(latency_s)
        self.margin.labels(p).set(r.deadline_margin_s)
        self.obs_used.labels(p).set(r.obs_used)
        self.obs_late.labels(p).set(r.obs_late)
        if r.missed:
            self.misses.labels(p).inc()

    def failed(self, product: str) -> None:
        self.cycles.labels(product, "failed").inc()

    def model_loaded(self, path: Path, seconds: float) -> None:
        self.model_load.labels(str(path)).set(seconds)

    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Start the /metrics HTTP server in a daemon thread; returns (server, thread)."""
        return start_http_server(port, addr=addr, registry=self.registry)
