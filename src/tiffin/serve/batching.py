"""Adaptive batching: merge concurrent requests for one model into one predict call.

How peers decide when to dispatch, and what tiffin does instead:

- Triton's dynamic batcher and Ray Serve's ``@serve.batch`` wait for a batch to fill
  or for a timeout (``max_queue_delay_microseconds`` / ``batch_wait_timeout_s``), so a
  lone request pays the whole delay at low load.
- BentoML's adaptive dispatcher learns a latency model and waits when it predicts
  that waiting pays; it still waits on a guess.

tiffin never waits on a timer while the model is idle: the first request runs at once.
While a batch runs, new requests queue, and the moment the model is free everything
queued (up to ``max_batch_size``) is merged into the next call. At low load that is
zero added latency; under load the batch size follows the arrival rate times the
model's own latency, which is exactly the amount of merging that pays.
``max_latency_ms`` bounds how long a request may sit in the queue before it is
failed with 503 (the server is overloaded), so queueing can never grow without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_LATENCY_MS = 1000.0


class Overloaded(Exception):
    """The queue is full, or a request waited longer than allowed."""


@dataclass
class _Pending:
    arrays: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Merges requests for one model; one batch runs at a time per model."""

    def __init__(
        self,
        predict: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
        executor: Executor,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_latency_ms: float = DEFAULT_MAX_LATENCY_MS,
        queue_size: int = 1024,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.predict = predict
        self.executor = executor
        self.max_batch_size = max(1, max_batch_size)
        self.max_latency = max_latency_ms / 1000.0
        self.queue_size = queue_size
        self.on_batch = on_batch
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def submit(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if len(self._queue) >= self.queue_size:
            raise Overloaded("the model's queue is full")
        rows = _rows(arrays)
        future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(arrays, rows, future))
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await future

    def _take(self) -> list[_Pending]:
        now = time.perf_counter()
        batch: list[_Pending] = []
        rows = 0
        keep: list[_Pending] = []
        for item in self._queue:
            if item.future.done():
                continue  # the caller gave up (timeout); its slot is free
            if now - item.enqueued > self.max_latency:
                item.future.set_exception(Overloaded("waited too long in the queue"))
                continue
            if not batch or (
                rows + item.rows <= self.max_batch_size and _compatible(batch[0], item)
            ):
                batch.append(item)
                rows += item.rows
            else:
                keep.append(item)
        self._queue = keep
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self._take()
            if not batch:
                self._wakeup.clear()
                if not self._queue:
                    return
                continue
            merged = _merge([p.arrays for p in batch])
            if self.on_batch:
                self.on_batch(len(batch), sum(p.rows for p in batch))
            try:
                outputs = await loop.run_in_executor(self.executor, self.predict, merged)
                parts = _split(outputs, [p.rows for p in batch])
            except Exception as exc:  # the model failed: each caller gets the error
                if len(batch) > 1:
                    # Re-run one by one so a single bad request cannot fail its neighbours.
                    for p in batch:
                        try:
                            out = await loop.run_in_executor(self.executor, self.predict, p.arrays)
                            _resolve(p, out)
                        except Exception as single:
                            _fail(p, single)
                else:
                    _fail(batch[0], exc)
                continue
            for p, out in zip(batch, parts):
                _resolve(p, out)


def _resolve(p: _Pending, out: dict[str, np.ndarray]) -> None:
    if not p.future.done():
        p.future.set_result(out)


def _fail(p: _Pending, exc: BaseException) -> None:
    if not p.future.done():
        p.future.set_exception(exc)


def _rows(arrays: dict[str, np.ndarray]) -> int:
    first = next(iter(arrays.values()))
    return int(first.shape[0]) if first.ndim else 1


def _compatible(a: _Pending, b: _Pending) -> bool:
    """Requests merge only when every input agrees on dtype and trailing shape."""
    if a.arrays.keys() != b.arrays.keys():
        return False
    return all(
        a.arrays[k].dtype == b.arrays[k].dtype and a.arrays[k].shape[1:] == b.arrays[k].shape[1:]
        for k in a.arrays
    )


def _merge(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def _split(outputs: dict[str, np.ndarray], rows: list[int]) -> list[dict[str, np.ndarray]]:
    if len(rows) == 1:
        return [outputs]
    total = sum(rows)
    bounds = np.cumsum(rows)[:-1]
    for name, arr in outputs.items():
        if np.ndim(arr) == 0 or np.shape(arr)[0] != total:
            raise ValueError(f"output {name!r} does not keep the batch axis; cannot split it")
    split = {k: np.split(np.asarray(v), bounds) for k, v in outputs.items()}
    return [{k: split[k][i] for k in outputs} for i in range(len(rows))]
