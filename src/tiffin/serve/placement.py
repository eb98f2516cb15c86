"""Where a predict call runs: on the event loop when it is cheap, else on a thread.

A predict call on the thread pool keeps the event loop answering (HTTP, JSON, probes)
while the model computes, but the hop costs: hand the call to a worker thread, wake
it, wake the event loop with the result. Measured here, that is 30-180 µs, as much as
the call itself for a small model (a one-row predict of a 20-256-256-2 PyTorch MLP
takes 70 µs), and with one worker process per CPU the thread only takes its core
from the other worker. So a call expected to finish within ``INLINE_SECONDS`` runs
on the event loop, which stalls other requests for no longer than that; anything
longer, and any model not measured yet, goes to the thread pool.

The expectation comes from the model's own recent calls: a moving average of their
time and of their size (values in all inputs), scaled up linearly for a bigger call
(conservative: a model's fixed cost makes a bigger call cheaper per value, never
dearer). Only all-numeric inputs are judged so: the cost of text or object inputs
follows their content, not their shape (one row of a megabyte of text), so they always
run on the thread. So do models of the custom and pickle flavors (the server gives them
``inline_seconds`` 0): their predict is any Python, whose cost can follow the values (a
loop over ``range(x)``), and an inline call cannot be cut short by the request timeout.
Measured here
with ``tiffin serve`` on that MLP: one client 1,530 -> 1,840 requests/s (p50 628 ->
515 µs), eight clients 4,330 -> 5,760; sixty-four clients unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

Arrays = dict[str, np.ndarray]
INLINE_SECONDS = 0.0005
# flavors whose predict cost follows the input's size: compiled estimators and graphs
SIZED_FLAVORS = frozenset({"sklearn", "xgboost", "lightgbm", "onnx", "torch"})


class Placement:
    """Runs ``predict`` inline or on ``executor``, from what its calls have cost."""

    def __init__(
        self,
        predict: Callable[[Arrays], Arrays],
        executor: Executor,
        inline_seconds: float = INLINE_SECONDS,
    ) -> None:
        self.predict = predict
        self.executor = executor
        self.inline_seconds = inline_seconds
        self.seconds: float | None = None  # moving average of one call's own time
        self.size = 1.0  # moving average of the values in those calls

    def expected(self, size: int | None) -> float | None:
        """Seconds a call of ``size`` values is expected to take; None when unknown."""
        if self.seconds is None or size is None:
            return None
        return self.seconds * max(1.0, size / self.size)

    async def __call__(self, arrays: Arrays) -> Arrays:
        size = _numeric_size(arrays)
        expected = self.expected(size)
        if expected is not None and expected < self.inline_seconds:
            started = time.perf_counter()
            out = self.predict(arrays)
            self._observe(time.perf_counter() - started, size)
            return out
        loop = asyncio.get_running_loop()
        out, seconds = await loop.run_in_executor(self.executor, self._timed, arrays)
        self._observe(seconds, size)
        return out

    def _timed(self, arrays: Arrays) -> tuple[Arrays, float]:
        # timed on the thread itself: the hop is not the model's cost
        started = time.perf_counter()
        out = self.predict(arrays)
        return out, time.perf_counter() - started

    def _observe(self, seconds: float, size: int | None) -> None:
        if size is None:
            return  # text or objects: never inline, so their cost need not be learnt
        if self.seconds is None:
            self.seconds, self.size = seconds, float(size)
            return
        self.seconds = 0.8 * self.seconds + 0.2 * seconds
        self.size = 0.8 * self.size + 0.2 * size


def _numeric_size(arrays: Arrays) -> int | None:
    """Values in all inputs (at least 1); None when any input is not numbers."""
    size = 0
    for arr in arrays.values():
        if arr.dtype.kind not in "biuf":
            return None
        size += arr.size
    return max(size, 1)
