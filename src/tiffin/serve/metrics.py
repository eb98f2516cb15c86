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
| ``tiffin_buffered_request_bytes`` | gauge: request body bytes held (``budget``) | none |

Requests that name no served model count under ``model=""``. Labelled children are
looked up once per model and cached: the registry's own lookup takes a lock per call.

With several workers every value written is a locked write to a memory-mapped file with
a ``getpid()`` check, and a histogram observation is two of them plus a Python walk of
its buckets: 3.9 µs for the counter and latency of one answer and 7 µs
for the three histograms of one batch, on a request whose whole Python work is about
50 µs. So answers and batches are tallied in plain Python (a count per label set, the
observations in a list) and written once per turn of the event loop (``call_soon``):
the answers of one batch, all written in the same turn, cost one write per counter,
sum and touched bucket, not three each. The values reach the files within that turn,
before a scrape on this worker can be served; ``render`` writes whatever is pending
first all the same. Outside an event loop every call writes at once.

The queue depth changes twice a request; it is written once ``DEPTH_EVERY`` seconds at
most (when it changed), not at every change: a gauge that a scrape every few seconds
samples anyway needs no more.

With several worker processes the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before
any worker starts; every worker then writes its values to files there, and whichever
worker answers a scrape sums them all (prometheus-client's multiprocess mode), so
``/metrics`` shows the whole server, not one worker.
"""

from __future__ import annotations

import asyncio
import bisect
import os
from collections.abc import Callable, Iterable
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
        self.buffered = Gauge(
            "tiffin_buffered_request_bytes",
            "Bytes of request bodies held in memory (raw and inflated), against --max-buffered-bytes",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self._models: list[ModelMetrics] = []  # each flushed before a scrape

    def buffered_bytes(self, read: Callable[[], int]) -> Callable[[int], None] | None:
        """Show ``read()`` as the buffered-bytes gauge; what to call when it changes, if any.

        One process alone: the gauge calls ``read`` at each scrape, and nothing is
        written per request (0.45 µs a request). Several workers: each
        writes its own value to the shared files, so the caller reports changes.
        """
        if os.environ.get(MULTIPROC_ENV):
            return self.buffered.set
        self.buffered.set_function(read)
        return None

    def for_model(self, name: str, version: str) -> ModelMetrics:
        model = ModelMetrics(self, name, version)
        self._models.append(model)
        return model

    def render(self) -> bytes:
        for model in self._models:
            model.flush()
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)


class ModelMetrics:
    """The labelled children for one model version, cached; answers and batches tallied."""

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
        # tallied since the last flush: answers per (endpoint, code), latencies of the
        # answered requests per endpoint, and batches as (requests, rows, seconds)
        self._answers: dict[tuple[str, int], int] = {}
        self._latencies: dict[str, list[float]] = {}
        self._batches: list[tuple[int, int, float]] = []
        self._flush_due_on: asyncio.AbstractEventLoop | None = None

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
        self._batches.append((requests, rows, seconds))
        self._flush_soon()

    def answered(self, endpoint: str, code: int, seconds: float) -> None:
        key = (endpoint, code)
        self._answers[key] = self._answers.get(key, 0) + 1
        if code < 400:
            latencies = self._latencies.get(endpoint)
            if latencies is None:
                latencies = self._latencies[endpoint] = []
            latencies.append(seconds)
        self._flush_soon()

    def _flush_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not served (a script, a test): nothing to share a write with
            self.flush()
            return
        if self._flush_due_on is not loop:  # none due (or only on a loop that has ended)
            self._flush_due_on = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what was tallied since the last flush to the Prometheus values."""
        self._flush_due_on = None
        answers, self._answers = self._answers, {}
        latencies, self._latencies = self._latencies, {}
        batches, self._batches = self._batches, []
        for (endpoint, code), count in answers.items():
            counter = self._requests.get((endpoint, code))
            if counter is None:
                counter = self._m.requests.labels(*self.labels, endpoint, code)
                self._requests[(endpoint, code)] = counter
            counter.inc(count)
            if code >= 400:
                errors = self._errors.get(code)
                if errors is None:
                    errors = self._errors[code] = self._m.errors.labels(*self.labels, code)
                errors.inc(count)
        for endpoint, seconds in latencies.items():
            latency = self._latency.get(endpoint)
            if latency is None:
                latency = self._latency[endpoint] = self._m.latency.labels(*self.labels, endpoint)
            observe_all(latency, seconds)
        if batches:
            observe_all(self._batch_requests, [b[0] for b in batches])
            observe_all(self._batch_rows, [b[1] for b in batches])
            observe_all(self._predict, [b[2] for b in batches])


def observe_all(histogram: Any, amounts: Iterable[float]) -> None:
    """``histogram.observe`` for each amount, with one write per bucket touched.

    prometheus-client observes one value at a time (a write for the sum, one for the
    bucket); this adds many and writes each total once. It reads the child's bucket
    bounds and values (``_upper_bounds``, ``_buckets``, ``_sum``, the attributes its own
    ``observe`` uses); ``test_metrics`` checks the result against ``observe``'s.
    """
    bounds = histogram._upper_bounds  # ascending, +Inf last
    counts: dict[int, int] = {}
    total = 0.0
    for amount in amounts:
        total += amount
        i = bisect.bisect_left(bounds, amount)  # the first bucket with amount <= bound
        counts[i] = counts.get(i, 0) + 1
    histogram._sum.inc(total)
    for i, count in counts.items():
        histogram._buckets[i].inc(count)
