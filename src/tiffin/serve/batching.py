"""Adaptive batching: concurrent requests for one model merged into one predict call.

It never waits on a timer and never guesses when to release (``docs/serving.md`` sets
this beside Triton's, Ray Serve's and BentoML's batchers, with the figures):

1. **Idle model: run after one look at the door.** A request that finds the model idle
   is dispatched once the event loop has polled its sockets one more time, so requests
   whose bytes already sit in the kernel's buffers join it; while each turn of the loop
   brings more, it keeps gathering, for no longer than one batch takes (the wait of a
   request that arrives while a batch runs), at most ``MAX_GATHER_TURNS`` turns and up to
   ``max_batch_size`` rows. When nothing waits, that look is one empty poll. It matters
   because a cheap model runs on the event loop itself (``placement``), which reads
   nothing while it computes: without the look each batch would hold only the requests
   read in one poll, and a forward on a worker busy with HTTP and JSON costs several
   times its cost in a tight loop, so fewer, bigger calls pay twice over.
2. **Busy model: accumulate.** Requests that arrive while a batch runs queue up; the
   moment the call returns, everything queued (first come, first served, up to
   ``max_batch_size`` rows) is concatenated along the batch axis and run as one call.
   The batch size therefore follows the arrival rate times the model's own latency,
   which is exactly the amount of merging that pays: a timer can only add latency to
   an idle model, and a busy model already forms the largest batch available.
3. **Latency budget: refuse early.** Each model keeps a moving average of its batch
   time. A request whose expected wait (the batches queued ahead of it, plus the one
   running, times that average) exceeds ``max_latency_ms`` is refused at once with 503
   and Retry-After, instead of queueing for an answer that would come too late; one
   that has already waited longer than the budget when its turn comes is refused too.
   The queue is therefore bounded in time as well as in length, which keeps the tail
   latency of the requests that are served close to twice the batch time.

Requests merge only when every input agrees in dtype and trailing shape; a request of
more rows than ``max_batch_size`` runs on its own. Inputs are checked against the
signature before they queue (``model``), so one bad request never fails a batch; if a
merged call fails anyway, its requests are re-run one by one so each gets its own
answer. One batch runs at a time per model, on the predict thread, or on the event loop
itself when the model's calls are cheaper than the hop to a thread (``placement``).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from .placement import INLINE_SECONDS, Placement

DEFAULT_MAX_BATCH_SIZE = 64
MAX_GATHER_TURNS = 16  # loop turns an idle model's batch may wait for company
Arrays = dict[str, np.ndarray]
# a request's rows and kind (``request_shape``)
Shape = tuple[int, tuple[object, ...] | None]


class Overloaded(Exception):
    """The queue is full, or a request would wait (or has waited) past its budget."""


class _Pending:
    """One queued request (a slotted class: one is made per request)."""

    __slots__ = ("arrays", "enqueued", "future", "kind", "rows")

    def __init__(self, arrays: Arrays, future: asyncio.Future[Arrays], shape: Shape) -> None:
        self.arrays = arrays
        # kind None: the request runs alone; requests of one kind merge
        self.rows, self.kind = shape
        self.future = future
        self.enqueued = time.perf_counter()


class Batcher:
    """Merges requests for one model; one batch runs at a time."""

    def __init__(
        self,
        predict: Callable[[Arrays], Arrays],
        executor: Executor,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_latency_ms: float = 30_000.0,
        queue_size: int = 1024,
        on_batch: Callable[[int, int, float], None] | None = None,
        inline_seconds: float = INLINE_SECONDS,
    ) -> None:
        self.predict = Placement(predict, executor, inline_seconds)
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_latency = max(0.0, max_latency_ms) / 1000.0
        self.queue_size = queue_size
        self.on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._task: asyncio.Task[None] | None = None
        self.batch_seconds: float | None = None  # moving average of one call

    @property
    def depth(self) -> int:
        """Requests waiting (not counting the batch that runs)."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def expected_wait(self, rows: int) -> float:
        """Seconds a new request of ``rows`` rows would wait before its answer."""
        if self.batch_seconds is None or not self.busy:
            return 0.0
        ahead = math.ceil((self._queued_rows + rows) / self.max_batch_size)
        return (1 + ahead) * self.batch_seconds

    async def submit(self, arrays: Arrays, shape: Shape | None = None) -> Arrays:
        """Queue one request and wait for its share of a batch.

        ``shape`` is ``request_shape(arrays)`` when the caller has it already.
        """
        if len(self._queue) >= self.queue_size:
            raise Overloaded("the model's queue is full")
        future = asyncio.get_running_loop().create_future()
        pending = _Pending(arrays, future, shape or request_shape(arrays))
        busy = self.busy
        if busy:
            wait = self.expected_wait(pending.rows)
            if wait > self.max_latency:
                raise Overloaded(
                    f"the queue would hold this request about {wait * 1000:.0f} ms, "
                    f"over the {self.max_latency * 1000:.0f} ms budget"
                )
        self._queue.append(pending)
        self._queued_rows += pending.rows
        if not busy:
            self._task = asyncio.create_task(self._run())
        return await pending.future

    def _take(self) -> list[_Pending]:
        """The next batch: queued requests in order, as many rows as fit."""
        now = time.perf_counter()
        batch: list[_Pending] = []
        rows = 0
        skipped: list[_Pending] = []
        while self._queue:
            item = self._queue.popleft()
            self._queued_rows -= item.rows
            if item.future.done():
                continue  # the caller gave up (timeout, disconnect): its slot is free
            if now - item.enqueued > self.max_latency:
                item.future.set_exception(Overloaded("waited past the latency budget"))
                continue
            if not batch:
                batch.append(item)
                rows = item.rows
            elif (
                item.kind is not None
                and item.kind == batch[0].kind
                and rows + item.rows <= self.max_batch_size
            ):
                batch.append(item)
                rows += item.rows
            else:
                skipped.append(item)
            if rows >= self.max_batch_size:
                break
        for item in reversed(skipped):  # they keep their place at the front
            self._queue.appendleft(item)
            self._queued_rows += item.rows
        return batch

    async def _gather(self) -> None:
        """Let the requests already at the door join the batch of an idle model (1. above).

        One turn of the event loop (``sleep(0)``) lets it poll the sockets and start the
        requests read; those that merge queue here before the batch is taken.
        """
        if self._queue[0].kind is None:
            return  # it runs alone whatever comes
        started = time.perf_counter()
        for _ in range(MAX_GATHER_TURNS):
            if self._queued_rows >= self.max_batch_size:
                return
            queued = len(self._queue)
            await asyncio.sleep(0)
            if len(self._queue) <= queued:
                return  # a quiet turn: nobody else is at the door
            if time.perf_counter() - started >= (self.batch_seconds or 0.0):
                return

    async def _run(self) -> None:
        await self._gather()
        while self._queue:
            batch = self._take()
            if not batch:
                continue
            rows = [p.rows for p in batch]
            started = time.perf_counter()
            try:
                merged = _merge([p.arrays for p in batch])
                outputs = await self.predict(merged)
                parts = _split(outputs, rows)
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0], exc)
                else:  # one request must not fail its neighbours: each runs alone
                    for p in batch:
                        try:
                            _resolve(p, await self.predict(p.arrays))
                        except Exception as single:
                            _fail(p, single)
                continue
            seconds = time.perf_counter() - started
            self.batch_seconds = (
                seconds if self.batch_seconds is None else 0.8 * self.batch_seconds + 0.2 * seconds
            )
            if self.on_batch is not None:
                self.on_batch(len(batch), sum(rows), seconds)
            for p, out in zip(batch, parts):
                _resolve(p, out)


def _resolve(p: _Pending, out: Arrays) -> None:
    if not p.future.done():
        p.future.set_result(out)


def _fail(p: _Pending, exc: BaseException) -> None:
    if not p.future.done():
        p.future.set_exception(exc)


def request_shape(arrays: Arrays) -> Shape:
    """The request's batch size and its kind: the names, dtypes and trailing shapes.

    Requests merge only when their kinds are equal. The kind is None, and the request
    always runs alone, when an input has no batch axis or the inputs disagree on its
    size: a request may legally send inputs of different leading sizes (the model may
    broadcast them), and merged with others, split points taken from one input would
    hand rows of one request to another. Computed once per request, so the batch
    compares one tuple per request instead of every input's dtype and shape.
    """
    rows = -1
    kind: list[object] = []
    for name, arr in arrays.items():
        if not arr.ndim or (rows != -1 and arr.shape[0] != rows):
            return 1, None
        rows = int(arr.shape[0])
        kind += (name, arr.dtype, arr.shape[1:])
    if rows == -1:
        return 1, None
    return rows, tuple(kind)


def _merge(parts: list[Arrays]) -> Arrays:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def _split(outputs: Arrays, rows: list[int]) -> list[Arrays]:
    if len(rows) == 1:
        return [outputs]
    total = sum(rows)
    for name, arr in outputs.items():
        if np.ndim(arr) == 0 or np.shape(arr)[0] != total:
            raise ValueError(f"output {name!r} does not keep the batch axis; cannot split it")
    ends = list(itertools.accumulate(rows))
    arrays = {k: np.asarray(v) for k, v in outputs.items()}
    # plain slices (views): np.split costs ten times as much for the same views
    return [{k: v[end - n : end] for k, v in arrays.items()} for n, end in zip(rows, ends)]
