"""Prometheus metrics per model and version, rendered by prometheus-client."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from tiffin.serve.metrics import DEPTH_EVERY, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_requests_errors_latency_batches_and_queue() -> None:
    metrics = Metrics()
    iris = metrics.for_model("iris", "2")
    for _ in range(3):
        iris.answered("infer", 200, 0.002)
    iris.answered("infer", 400, 0.001)
    iris.answered("invocations", 503, 0.001)
    iris.batch(5, 7, 0.01)
    iris.queue_depth.set(4)
    metrics.for_model("", "").answered("infer", 404, 0.0)
    got = samples(metrics)
    m = (("model", "iris"), ("version", "2"))

    def key(name: str, *extra: tuple[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (name, tuple(sorted(m + extra)))

    assert got[key("tiffin_requests_total", ("code", "200"), ("endpoint", "infer"))] == 3
    assert got[key("tiffin_requests_total", ("code", "503"), ("endpoint", "invocations"))] == 1
    assert got[key("tiffin_errors_total", ("code", "400"))] == 1
    assert got[key("tiffin_request_latency_seconds_count", ("endpoint", "infer"))] == 3
    assert got[key("tiffin_request_latency_seconds_bucket", ("endpoint", "infer"), ("le", "0.0025"))] == 3  # fmt: skip
    assert got[key("tiffin_batch_requests_sum")] == 5
    assert got[key("tiffin_batch_rows_sum")] == 7
    assert got[key("tiffin_predict_seconds_count")] == 1
    assert got[key("tiffin_queue_depth")] == 4
    unknown = (("code", "404"), ("endpoint", "infer"), ("model", ""), ("version", ""))
    assert got[("tiffin_requests_total", unknown)] == 1
    assert not any(k[0] == "tiffin_queue_depth" and ("model", "") in k[1] for k in got)


def test_servers_do_not_share_registries() -> None:
    a, b = Metrics(), Metrics()
    a.for_model("m", "1").answered("infer", 200, 0.001)
    assert b"tiffin_requests_total{" not in b.render()


def test_queue_depth_is_written_once_per_period_with_its_latest_value() -> None:
    metrics = Metrics()
    iris = metrics.for_model("iris", "2")
    depth = ("tiffin_queue_depth", (("model", "iris"), ("version", "2")))
    writes: list[float] = []
    real_set = iris.queue_depth.set

    def counted_set(value: float) -> None:
        writes.append(value)
        real_set(value)

    iris.queue_depth.set = counted_set  # type: ignore[method-assign]

    async def changes(*values: int, wait: bool = True) -> None:
        for value in values:
            iris.depth(value)
        if wait:
            await asyncio.sleep(DEPTH_EVERY * 2)

    async def run() -> None:
        iris.depth(1)
        assert writes == []  # not at each change
        await changes(2, 3, 2)  # four changes within one period: one write, of the last
        assert writes == [2]
        assert samples(metrics)[depth] == 2
        await changes(0)  # a change after the write is written in turn
        assert writes == [2, 0]

    asyncio.run(run())
    asyncio.run(changes(5, wait=False))  # due on a loop that then ended
    asyncio.run(changes(7))  # ... never blocks the next loop's writes
    assert samples(metrics)[depth] == 7
