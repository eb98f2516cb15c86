"""Prometheus metrics per model and version, rendered by prometheus-client."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tiffin.serve.metrics import BATCH_BUCKETS, DEPTH_EVERY, LATENCY_BUCKETS, Metrics, observe_all


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


def _counted(child: Any) -> list[float]:
    """The amounts written to a counter child's value, one entry per write."""
    writes: list[float] = []
    real_inc = child._value.inc

    def inc(amount: float) -> None:
        writes.append(amount)
        real_inc(amount)

    child._value.inc = inc
    return writes


def test_answers_are_written_once_per_turn_of_the_loop() -> None:
    metrics = Metrics()
    iris = metrics.for_model("iris", "2")
    ok = metrics.requests.labels("iris", "2", "infer", 200)
    writes = _counted(ok)
    latency = ("tiffin_request_latency_seconds_count", (("endpoint", "infer"), ("model", "iris"), ("version", "2")))  # fmt: skip

    async def run() -> None:
        for _ in range(5):  # the answers of one batch, in one turn
            iris.answered("infer", 200, 0.003)
        iris.batch(5, 5, 0.001)
        assert writes == []  # tallied, not yet written
        await asyncio.sleep(0)
        assert writes == [5]  # one write for the five
        iris.answered("infer", 200, 0.003)
        assert samples(metrics)[latency] == 6  # a scrape writes what is pending first

    asyncio.run(run())
    assert writes == [5, 1]
    ended = asyncio.new_event_loop()
    ended.call_soon(ended.stop)  # the loop stops after this turn ...
    ended.call_soon(iris.answered, "infer", 200, 0.003)  # ... with the write still due
    ended.run_forever()
    ended.close()
    assert writes == [5, 1]
    asyncio.run(_answer(iris))  # a write due on an ended loop never blocks the next loop's
    assert writes == [5, 1, 2]  # the ended loop's answer is written with the next one's
    iris.answered("infer", 200, 0.003)  # no loop: written at once
    assert writes == [5, 1, 2, 1]
    assert samples(metrics)[("tiffin_batch_rows_sum", (("model", "iris"), ("version", "2")))] == 5


async def _answer(model: Any) -> None:
    model.answered("infer", 200, 0.003)
    await asyncio.sleep(0)


def _histogram_samples(buckets: tuple[float, ...], amounts: list[float], together: bool) -> dict[Any, float]:  # fmt: skip
    registry = CollectorRegistry()
    child = Histogram("h", "h", ["m"], buckets=buckets, registry=registry).labels("x")
    if together:
        observe_all(child, amounts)
    else:
        for amount in amounts:
            child.observe(amount)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


# exact floats only: the sum of many is then the same in any order
exact = st.integers(-(10**6), 10**8).map(lambda n: n / 1024)
edges = st.sampled_from([*LATENCY_BUCKETS, 0.0, -1.0, 1e9, float("inf")])


@given(st.lists(edges | exact, max_size=40))
def test_observing_many_at_once_matches_observing_each(amounts: list[float]) -> None:
    for buckets in (LATENCY_BUCKETS, BATCH_BUCKETS):  # bounds themselves, between, past the last
        together = _histogram_samples(buckets, amounts, True)
        assert together == _histogram_samples(buckets, amounts, False)
