"""The adaptive batcher: idle runs at once, busy accumulates, caps, budget, isolation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from tiffin.serve.batching import Batcher, Overloaded

Arrays = dict[str, np.ndarray]


class Model:
    """Doubles its input, records every batch it is called with, optionally slowly."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[int] = []
        self.gate: threading.Event | None = None

    def __call__(self, arrays: Arrays) -> Arrays:
        if self.gate is not None:
            self.gate.wait(5)
        x = arrays["x"]
        if np.any(x < 0):
            raise ValueError("negative input")
        self.batches.append(len(x))
        time.sleep(self.delay)
        return {"y": x * 2}


def row(v: float, n: int = 1) -> Arrays:
    return {"x": np.full((n, 2), v)}


async def staggered(batcher: Batcher, requests: list[Arrays]) -> list[Any]:
    """The first request finds the model idle; the rest arrive while it runs."""
    first = asyncio.ensure_future(batcher.submit(requests[0]))
    await asyncio.sleep(0.005)
    rest = [asyncio.ensure_future(batcher.submit(r)) for r in requests[1:]]
    return await asyncio.gather(first, *rest, return_exceptions=True)


def run(main: Callable[[ThreadPoolExecutor], Awaitable[Any]]) -> Any:
    with ThreadPoolExecutor(2) as pool:
        return asyncio.run(main(pool))


def test_an_idle_model_runs_a_request_at_once() -> None:
    model = Model()

    async def main(pool: ThreadPoolExecutor) -> float:
        batcher = Batcher(model, pool, max_batch_size=8)
        started = time.perf_counter()
        out = await batcher.submit(row(1.0))
        assert out["y"].tolist() == [[2.0, 2.0]]
        return time.perf_counter() - started

    assert run(main) < 0.5  # no timer: nothing waits for company
    assert model.batches == [1]


def test_requests_arriving_while_busy_are_merged_and_split_back() -> None:
    model = Model(delay=0.05)

    async def main(pool: ThreadPoolExecutor) -> list[Arrays]:
        batcher = Batcher(model, pool, max_batch_size=64)
        return await staggered(batcher, [row(float(i)) for i in range(20)])

    results = run(main)
    # the first runs alone (the model was idle), the 19 that queued meanwhile run together
    assert model.batches == [1, 19]
    for i, out in enumerate(results):
        assert out["y"].tolist() == [[2.0 * i, 2.0 * i]]


def test_a_cheap_model_run_on_the_event_loop_still_merges_concurrent_requests() -> None:
    # Once placement runs the calls inline, the batch task's turn on the event loop is
    # the window in which concurrent requests queue: they must keep merging.
    model = Model()

    async def main(pool: ThreadPoolExecutor) -> list[Arrays]:
        batcher = Batcher(model, pool, max_batch_size=64)
        for _ in range(3):
            await batcher.submit(row(0.0))  # measured: cheap, so inline from now on
        assert batcher.predict.inline_seconds > (batcher.predict.expected(1) or 1.0)
        model.batches.clear()
        return await asyncio.gather(*(batcher.submit(row(float(i))) for i in range(40)))

    results = run(main)
    assert model.batches == [40]
    assert [float(out["y"][0, 0]) for out in results] == [2.0 * i for i in range(40)]


async def later(turns: int, action: Callable[[], Any]) -> Any:
    """``action()`` after ``turns`` turns of the event loop (no timer)."""
    for _ in range(turns):
        await asyncio.sleep(0)
    return await action()


def test_requests_arriving_in_the_next_turns_join_an_idle_models_batch() -> None:
    # Requests read in the loop's next polls (their bytes were already in the kernel)
    # join the batch of the request that found the model idle.
    model = Model()

    async def main(pool: ThreadPoolExecutor) -> list[Arrays]:
        batcher = Batcher(model, pool, max_batch_size=8)
        batcher.batch_seconds = 10.0  # a slow model: gathering may take many turns
        return await asyncio.gather(
            batcher.submit(row(0.0)),
            later(1, lambda: batcher.submit(row(1.0))),
            later(2, lambda: batcher.submit(row(2.0))),
            later(3, lambda: batcher.submit(row(3.0))),
        )

    results = run(main)
    assert model.batches == [4]
    assert [float(out["y"][0, 0]) for out in results] == [0.0, 2.0, 4.0, 6.0]


def test_gathering_stops_at_the_first_quiet_turn() -> None:
    model = Model()

    async def main(pool: ThreadPoolExecutor) -> None:
        batcher = Batcher(model, pool, max_batch_size=8)
        batcher.batch_seconds = 10.0
        first = asyncio.ensure_future(batcher.submit(row(0.0)))
        await later(3, lambda: batcher.submit(row(1.0)))  # two quiet turns in between
        await first

    run(main)
    assert model.batches == [1, 1]


def test_gathering_lasts_no_longer_than_a_batch_takes() -> None:
    # Gathering costs a request at most what waiting behind a running batch would: a
    # model whose batches take no time at all gathers for one turn only, however many
    # requests each turn brings.
    model = Model()

    async def main(pool: ThreadPoolExecutor) -> None:
        batcher = Batcher(model, pool, max_batch_size=64)
        batcher.batch_seconds = 0.0
        await asyncio.gather(
            batcher.submit(row(0.0)),
            *(later(turn, lambda: batcher.submit(row(1.0))) for turn in range(1, 6)),
        )

    run(main)
    assert model.batches[0] == 2  # the first request and the one read in the first turn


class Stream:
    """Submits ``count`` requests, one per loop turn, each turn busy for 10 ms.

    ``seen`` is how many had been submitted when the model was first called: how long
    the first batch waited for company, in turns.
    """

    def __init__(self, batcher: Batcher, count: int) -> None:
        self.batcher, self.count = batcher, count
        self.submitted = 0
        self.seen: int | None = None

    def model(self, arrays: Arrays) -> Arrays:
        if self.seen is None:
            self.seen = self.submitted
        return {"y": arrays["x"] * 2}

    async def run(self, first: Arrays) -> list[Any]:
        calls = [asyncio.ensure_future(self.batcher.submit(first))]
        self.submitted = 1
        for _ in range(self.count - 1):
            await asyncio.sleep(0)
            calls.append(asyncio.ensure_future(self.batcher.submit(row(1.0))))
            self.submitted += 1
            time.sleep(0.01)  # a busy turn (releases the GIL: the model's thread runs)
        return await asyncio.gather(*calls)


def test_gathering_stops_once_the_batch_is_full() -> None:
    async def main(pool: ThreadPoolExecutor) -> Stream:
        stream = Stream(Batcher(lambda a: stream.model(a), pool, max_batch_size=4), 20)
        stream.batcher.batch_seconds = 10.0
        await stream.run(row(0.0))
        return stream

    stream = run(main)
    # 4 rows by the 4th turn, then dispatched (slack for a slow thread start); gathering
    # on would have waited past the 16th
    assert stream.seen is not None and stream.seen <= 10


def test_a_request_that_cannot_merge_waits_for_no_one() -> None:
    loner = {"x": np.ones((2, 2)), "y": np.ones((1, 2))}  # rows disagree: runs alone

    async def main(pool: ThreadPoolExecutor) -> Stream:
        stream = Stream(Batcher(lambda a: stream.model(a), pool, max_batch_size=64), 20)
        stream.batcher.batch_seconds = 10.0
        await stream.run(loner)
        return stream

    stream = run(main)
    assert stream.seen is not None and stream.seen <= 8  # dispatched on its first turn


def test_max_batch_size_counts_rows() -> None:
    model = Model(delay=0.02)

    async def main(pool: ThreadPoolExecutor) -> list[Arrays]:
        batcher = Batcher(model, pool, max_batch_size=4)
        sizes = [1, 3, 2, 2, 5, 1]
        return await staggered(batcher, [row(i, n) for i, n in enumerate(sizes)])

    results = run(main)
    # 1 alone (idle); then 3 + the 1 that fits beside it; 2 + 2; 5 rows > 4 run alone.
    # Nothing is split, and what is passed over keeps its place at the head of the queue.
    assert model.batches == [1, 4, 4, 5]
    assert [len(r["y"]) for r in results] == [1, 3, 2, 2, 5, 1]


def test_only_compatible_requests_merge() -> None:
    model = Model(delay=0.02)

    async def main(pool: ThreadPoolExecutor) -> None:
        batcher = Batcher(model, pool)
        wide = {"x": np.ones((1, 3))}
        narrow32 = {"x": np.ones((1, 2), np.float32)}
        await staggered(batcher, [row(1.0), row(1.0), wide, narrow32, row(1.0)])

    run(main)
    assert model.batches == [1, 2, 1, 1]  # first alone; the two [1, 2] float64 rows merge


def test_one_failing_request_does_not_fail_its_batch() -> None:
    model = Model(delay=0.02)

    async def main(pool: ThreadPoolExecutor) -> list[Any]:
        batcher = Batcher(model, pool)
        return await staggered(batcher, [row(v) for v in (1.0, 2.0, -1.0, 3.0)])

    first, ok2, bad, ok3 = run(main)
    assert first["y"][0, 0] == 2.0 and ok2["y"][0, 0] == 4.0 and ok3["y"][0, 0] == 6.0
    assert isinstance(bad, ValueError)


def test_outputs_without_a_batch_axis_are_run_one_by_one() -> None:
    calls: list[int] = []

    def summary(arrays: Arrays) -> Arrays:
        calls.append(len(arrays["x"]))
        time.sleep(0.02)
        return {"total": np.asarray(arrays["x"].sum())}

    async def main(pool: ThreadPoolExecutor) -> list[Arrays]:
        batcher = Batcher(summary, pool)
        return await staggered(batcher, [row(1.0) for _ in range(3)])

    results = run(main)
    assert [float(r["total"]) for r in results] == [2.0, 2.0, 2.0]
    assert calls == [1, 2, 1, 1]  # the merged call could not be split: each ran alone


def test_latency_budget_refuses_early_and_late() -> None:
    model = Model(delay=0.2)

    async def main(pool: ThreadPoolExecutor) -> None:
        batcher = Batcher(model, pool, max_batch_size=1, max_latency_ms=300)
        await batcher.submit(row(1.0))  # learns that a batch takes about 200 ms
        assert batcher.batch_seconds is not None and batcher.batch_seconds >= 0.2
        running = asyncio.ensure_future(batcher.submit(row(1.0)))
        await asyncio.sleep(0.01)
        # one batch running and this one queued: ~400 ms expected, over the 300 ms budget
        with pytest.raises(Overloaded, match="over the 300 ms budget"):
            await batcher.submit(row(1.0))
        await running

    run(main)

    async def late(pool: ThreadPoolExecutor) -> None:
        slow = Model()
        slow.gate = threading.Event()
        batcher = Batcher(slow, pool, max_batch_size=1, max_latency_ms=50)
        first = asyncio.ensure_future(batcher.submit(row(1.0)))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(batcher.submit(row(2.0)))  # no estimate yet: admitted
        await asyncio.sleep(0.2)
        slow.gate.set()
        await first
        with pytest.raises(Overloaded, match="waited past"):
            await second

    run(late)


def test_a_caller_that_gives_up_frees_its_place() -> None:
    model = Model()
    model.gate = threading.Event()

    async def main(pool: ThreadPoolExecutor) -> None:
        batcher = Batcher(model, pool, queue_size=2)
        first = asyncio.ensure_future(batcher.submit(row(1.0)))
        await asyncio.sleep(0.01)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(batcher.submit(row(2.0)), 0.05)
        third = asyncio.ensure_future(batcher.submit(row(3.0)))
        await asyncio.sleep(0.01)
        model.gate.set()
        await first
        assert (await third)["y"][0, 0] == 6.0

    run(main)
    assert model.batches == [1, 1]  # the abandoned request never ran


def test_a_full_queue_is_overloaded() -> None:
    model = Model()
    model.gate = threading.Event()

    async def main(pool: ThreadPoolExecutor) -> None:
        batcher = Batcher(model, pool, queue_size=1)
        first = asyncio.ensure_future(batcher.submit(row(1.0)))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(batcher.submit(row(2.0)))
        await asyncio.sleep(0.01)
        assert batcher.depth == 1
        with pytest.raises(Overloaded, match="queue is full"):
            await batcher.submit(row(3.0))
        model.gate.set()
        await asyncio.gather(first, second)

    run(main)


def test_a_request_whose_inputs_disagree_on_rows_is_never_merged() -> None:
    """x of 2 rows with y of 1 row is legal (the model broadcasts), but merged with others
    and split by x's rows, it once returned x of one request added to y of another."""

    def add(arrays: Arrays) -> Arrays:
        return {"out": arrays["x"][:, 0] + arrays["y"][:, 0]}

    a = {"x": np.array([[1.0], [2.0]]), "y": np.array([[10.0]])}
    b = {"x": np.array([[100.0]]), "y": np.array([[1000.0], [2000.0]])}
    c = {"x": np.array([[5.0]]), "y": np.array([[7.0]])}
    # a and b together have as many x rows as y rows, so a merged call would not fail
    requests = [c] + [a, b] * 8

    async def main(pool: ThreadPoolExecutor) -> list[Any]:
        batcher = Batcher(_slow(add), pool, max_batch_size=64)
        return await staggered(batcher, requests)

    for request, out in zip(requests, run(main)):
        assert out["out"].tolist() == add(request)["out"].tolist()


def _slow(predict: Callable[[Arrays], Arrays]) -> Callable[[Arrays], Arrays]:
    def call(arrays: Arrays) -> Arrays:
        time.sleep(0.02)  # long enough for the others to queue behind the first
        return predict(arrays)

    return call
