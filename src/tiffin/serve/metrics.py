"""Prometheus metrics per model and version (prometheus-client)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "version"]
        self.requests = Counter(
            "tiffin_requests",
            "Inference requests",
            [*labels, "endpoint", "code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "tiffin_errors", "Failed inference requests", [*labels, "code"], registry=self.registry
        )
        self.latency = Histogram(
            "tiffin_request_latency_seconds",
            "Inference latency",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "tiffin_batch_requests",
            "Requests merged per predict call",
            labels,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "tiffin_batch_rows",
            "Rows per predict call",
            labels,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "tiffin_queue_depth", "Requests waiting", labels, registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
