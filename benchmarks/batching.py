"""When to dispatch a batch: tiffin's batcher against the peers' timer policies.

The serving benchmark measures batching through HTTP, where the HTTP work per request
hides the dispatch decision; this one isolates it. The same models (the serving
benchmark's scikit-learn pipeline and two PyTorch MLPs, packed and loaded with
``tiffin.load``), the same merge and split code, the same placement of each predict
call (``tiffin.serve.placement``: on the event loop when cheap, else on one of two
predict threads), and N closed-loop callers (1, 8, 64) submitting one-row requests in one event loop; only the
decision of when a batch starts differs:

- **tiffin**: ``tiffin.serve.batching.Batcher`` itself: an idle model runs a request
  after one more turn of the event loop (more while each turn brings requests, no timer);
  requests arriving while a batch runs form the next batch the moment it returns.
- **timer 10 ms** (Ray Serve's ``@serve.batch`` with its default
  ``batch_wait_timeout_s=0.01``): once a first request is queued, the batch starts when
  ``max_batch_size`` requests are queued or 10 ms have passed, one batch at a time
  (``max_concurrent_batches=1``).
- **queue delay 1 ms** (Triton's dynamic batcher with ``max_queue_delay_microseconds:
  1000``): when the model is free, the batch starts at once if it is full, else when
  the oldest queued request has waited 1 ms.
- **no batching**: every request is its own predict call (the floor to beat).

Every policy has ``max_batch_size`` 64. BentoML's adaptive dispatcher fits a latency
model online; it is not re-implemented here (see ``tiffin.serve.batching``). The two
timer policies are written here from the peers' documented behaviour, not imported:
neither Ray nor Triton runs inside this process.

    TIFFIN_BENCH_SECONDS=2 TIFFIN_BENCH_ROUNDS=3 python benchmarks/batching.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json
from tiffin.serve.batching import Batcher, _merge, _split
from tiffin.serve.placement import Placement

DURATION = float(os.environ.get("TIFFIN_BENCH_SECONDS", "2"))
ROUNDS = int(os.environ.get("TIFFIN_BENCH_ROUNDS", "3"))
CONCURRENCY = (1, 8, 64)
MAX_BATCH = 64
Arrays = dict[str, np.ndarray]
Predict = Callable[[Arrays], Arrays]


class WaitingBatcher:
    """A batcher that may hold a batch back to let it fill: the peers' policy.

    ``from_oldest`` False: the wait starts when the batch starts collecting (Ray Serve);
    True: it is measured from the oldest queued request's arrival (Triton).
    """

    def __init__(
        self, predict: Predict, executor: Executor, *, delay: float, from_oldest: bool
    ) -> None:
        self.run = Placement(predict, executor)
        self.delay, self.from_oldest = delay, from_oldest
        self.queue: deque[tuple[float, Arrays, asyncio.Future[Arrays]]] = deque()
        self.arrived = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def submit(self, arrays: Arrays) -> Arrays:
        future: asyncio.Future[Arrays] = asyncio.get_running_loop().create_future()
        self.queue.append((time.perf_counter(), arrays, future))
        self.arrived.set()
        if self.task is None:
            self.task = asyncio.create_task(self._dispatch())
        return await future

    async def _dispatch(self) -> None:
        while True:
            while not self.queue:
                self.arrived.clear()
                await self.arrived.wait()
            began = self.queue[0][0] if self.from_oldest else time.perf_counter()
            deadline = began + self.delay
            while len(self.queue) < MAX_BATCH and (left := deadline - time.perf_counter()) > 0:
                self.arrived.clear()
                try:
                    await asyncio.wait_for(self.arrived.wait(), left)
                except TimeoutError:
                    break
            batch = [self.queue.popleft() for _ in range(min(MAX_BATCH, len(self.queue)))]
            merged = _merge([arrays for _, arrays, _ in batch])
            outputs = await self.run(merged)
            for (_, _, future), part in zip(batch, _split(outputs, [1] * len(batch))):
                future.set_result(part)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


class Unbatched:
    """Every request is its own predict call."""

    def __init__(self, predict: Predict, executor: Executor) -> None:
        self.run = Placement(predict, executor)

    async def submit(self, arrays: Arrays) -> Arrays:
        return await self.run(arrays)


POLICIES: dict[str, Callable[[Predict, Executor], Any]] = {
    "tiffin (no timer)": lambda p, ex: Batcher(p, ex, max_batch_size=MAX_BATCH),
    "timer 10 ms (Ray Serve default)": lambda p, ex: WaitingBatcher(
        p, ex, delay=0.010, from_oldest=False
    ),
    "queue delay 1 ms (Triton-style)": lambda p, ex: WaitingBatcher(
        p, ex, delay=0.001, from_oldest=True
    ),
    "no batching": Unbatched,
}


async def _load(submit: Callable[[Arrays], Awaitable[Arrays]], row: Arrays, clients: int) -> dict[str, float]:  # fmt: skip
    latencies: list[float] = []
    until = time.perf_counter() + DURATION

    async def client() -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            # Each request arrives through the event loop, as one read from a socket
            # does, and waits its turn behind the others: without this a caller whose
            # predict runs inline would never yield, and starve the rest.
            await asyncio.sleep(0)
            await submit(row)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(clients)))
    ms = np.array(latencies) * 1000
    return {"clients": clients, "rps": len(latencies) / DURATION,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}  # fmt: skip


def measure(policy: str, predict: Predict, row: Arrays, clients: int) -> dict[str, float]:
    async def main() -> dict[str, float]:
        with ThreadPoolExecutor(2, thread_name_prefix="tiffin-predict") as executor:
            batcher = POLICIES[policy](predict, executor)
            for _ in range(20):  # warm-up
                await batcher.submit(row)
            try:
                return await _load(batcher.submit, row, clients)
            finally:
                if hasattr(batcher, "close"):
                    batcher.close()

    return asyncio.run(main())


def main() -> None:
    import torch

    import tiffin
    from serve import make_models  # the serving benchmark's models, packed the same way

    torch.set_num_threads(1)  # as each server worker runs it
    models = make_models(Path(tempfile.mkdtemp(prefix="tiffin-batching-bench-")))
    loaded = {}
    for key, m in models.items():
        predictor = tiffin.load(m["pkg"])
        loaded[key] = (predictor.predict_named, {predictor.signature.inputs[0].name: m["x"]})
    raw: dict[str, list[dict[str, float]]] = {}
    for round_ in range(ROUNDS):
        for key, (predict, row) in loaded.items():
            for policy in POLICIES:
                print(f"[round {round_ + 1}/{ROUNDS}] {key}: {policy}", file=sys.stderr)
                for clients in CONCURRENCY:
                    cell = measure(policy, predict, row, clients)
                    raw.setdefault(f"{key}|{policy}|{clients}", []).append(cell)
    results = {
        name: {k: statistics.median(c[k] for c in cells) for k in ("rps", "p50_ms", "p99_ms")}
        for name, cells in raw.items()
    }
    lines = []
    for name, r in results.items():
        key, policy, clients = name.split("|")
        lines.append([key, policy, clients, f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"])  # fmt: skip
    print(table(["model", "policy", "callers", "req/s", "p50 ms", "p99 ms"], lines))
    path = write_json(
        "batching",
        {"seconds": DURATION, "rounds": ROUNDS, "max_batch_size": MAX_BATCH,
         "results": results, "raw": raw},
    )  # fmt: skip
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
