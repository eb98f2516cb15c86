"""Prometheus metrics per model and version (prometheus-client), served on ``/metrics``.

| metric | kind | labels |
|---|---|---|
| ``tiffin_requests_total`` | counter | model, version, endpoint, code |
| ``tiffin_errors_total`` | counter | model, version, code |
| ``tiffin_request_latency_seconds`` | histogram (answered requests) | model, version, endpoint |
| ``tiffin_batch_requests`` | histogram: requests merged per predict call | model, version |
| ``tiffin_batch_rows`` | histogram: rows per predict call | model, version |
| ``tiffin_predict_seconds`` | histogram: one predict call | model, version |
| ``tiffin_queue_depth`` | gauge: requests admitted and not yet answered | model, version |

Requests that name no served model count under ``model=""``. Labelled children are
looked up once per model and cached: the registry's own lookup takes a lock per call.
The queue depth changes twice a request; it is written once ``DEPTH_EVERY`` seconds at
most (when it changed), not at every change: with several workers each write is a
locked write to a memory-mapped file with a ``getpid()`` check, and two of them were
2.6 µs of a one-row infer, for a gauge that a scrape every few seconds samples anyway.

With several worker processes the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before
any worker starts; every worker then writes its values to files there, and whichever
worker answers a scrape sums them all (prometheus-client's multiprocess mode), so
``/metrics`` shows the whole server, not one worker.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEPTH_EVERY = 0.05  # seconds: the queue depth gauge lags the true depth by at most this


class Metrics:
    """The server's registry (one per server, so tests can run several in a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "version"]
        reg = self.registry
        self.requests = Counter(
            "tiffin_requests", "Requests answered", [*labels, "endpoint", "code"], registry=reg
        )
        self.errors = Counter(
            "tiffin_errors", "Requests answered with an error", [*labels, "code"], registry=reg
        )
        self.latency = Histogram(
            "tiffin_request_latency_seconds", "Time to answer a request, in seconds",
            [*labels, "endpoint"], buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self.batch_requests = Histogram(
            "tiffin_batch_requests", "Requests merged into one predict call", labels,
            buckets=BATCH_BUCKETS, registry=reg,
        )  # fmt: skip
        self.batch_rows = Histogram(
            "tiffin_batch_rows", "Rows in one predict call", labels,
            buckets=BATCH_BUCKETS, registry=reg,
        )  # fmt: skip
        self.predict_seconds = Histogram(
            "tiffin_predict_seconds", "Time of one predict call, in seconds", labels,
            buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "tiffin_queue_depth", "Requests admitted and not yet answered", labels,
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip

    def for_model(self, name: str, version: str) -> ModelMetrics:
        return ModelMetrics(self, name, version)

    def render(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)


class ModelMetrics:
    """The labelled children for one model version, cached."""

    def __init__(self, metrics: Metrics, name: str, version: str) -> None:
        self._m = metrics
        self.labels = (name, version)
        if name:  # requests for no served model only count, they never queue or batch
            self.queue_depth = metrics.queue_depth.labels(name, version)
            self._batch_requests = metrics.batch_requests.labels(name, version)
            self._batch_rows = metrics.batch_rows.labels(name, version)
            self._predict = metrics.predict_seconds.labels(name, version)
        self._requests: dict[tuple[str, int], Any] = {}
        self._errors: dict[int, Any] = {}
        self._latency: dict[str, Any] = {}
        self._depth = 0
        self._depth_due_on: asyncio.AbstractEventLoop | None = None  # a write is due on it

    def depth(self, value: int) -> None:
        """The queue depth is now ``value``: the gauge shows it within ``DEPTH_EVERY``."""
        self._depth = value
        loop = asyncio.get_running_loop()
        if self._depth_due_on is not loop:  # none due (or only on a loop that has ended)
            self._depth_due_on = loop
            loop.call_later(DEPTH_EVERY, self._write_depth)

    def _write_depth(self) -> None:
        self._depth_due_on = None
        self.queue_depth.set(self._depth)

    def batch(self, requests: int, rows: int, seconds: float) -> None:
        self._batch_requests.observe(requests)
        self._batch_rows.observe(rows)
        self._predict.observe(seconds)

    def answered(self, endpoint: str, code: int, seconds: float) -> None:
        key = (endpoint, code)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self._m.requests.labels(*self.labels, endpoint, code)
        counter.inc()
        if code >= 400:
            errors = self._errors.get(code)
            if errors is None:
                errors = self._errors[code] = self._m.errors.labels(*self.labels, code)
            errors.inc()
            return
        latency = self._latency.get(endpoint)
        if latency is None:
            latency = self._latency[endpoint] = self._m.latency.labels(*self.labels, endpoint)
        latency.observe(seconds)
