"""Where a predict call runs: on the event loop when it is cheap, else on a thread.

A predict call on the thread pool keeps the event loop answering (HTTP, JSON, probes)
while the model computes, but the hop costs: hand the call to a worker thread, wake
it, wake the event loop with the result: 30-180 µs, as much as
the call itself for a small model (a one-row predict of a 20-256-256-2 PyTorch MLP
takes 70 µs), and with one worker process per CPU the thread only takes its core
from the other worker. So a call expected to finish within ``INLINE_SECONDS`` runs
on the event loop, which stalls other requests for no longer than that; anything
longer, and any model not measured yet, goes to the thread pool.

The expectation comes from the model's own recent calls on the event loop, kept per
size class (calls of 2^k to 2^(k+1)-1 values in all inputs): a moving average of their
time (by the clock: the stall; by the loop's CPU time when calls on the thread ran
meanwhile, whose GIL turns would count as the model's) and of their size. A call is
judged by its own class, else by the nearest smaller class measured, scaled up linearly
(conservative: a model's fixed cost makes a bigger call cheaper per value, never
dearer), else by the nearest bigger one (fewer values cost no more). One average over
all sizes was not enough: batches of 10 rows averaged 150 µs for a small MLP, so a
batch of 22 rows looked like 330 µs and more (its fixed cost scaled up with it), and a
third of all batches, half the rows, went to the thread though a 64-row batch takes
180 µs; with classes each size is judged by calls of its own size.

A call timed on the thread cannot set the expectation: there the call also waits for
the GIL, which the event loop holds between the model's releases, and for a core; on
2 CPUs a batch that takes 250 µs inline measured 1 ms on the thread (by the
clock, and even by the thread's own CPU time), so a model once on the thread stayed
there for good, paying the hop and the GIL fight it was measured under. So the thread's timing only says
whether the loop is worth a try: while it is under ``PROBE_FACTOR`` times
``inline_seconds``, one call in ``PROBE_EVERY`` runs on the loop, and that call's own
time decides. A model that is dear inline thus stalls the loop for at most 4 ms once in
``PROBE_EVERY`` calls; one slower than that on the thread is never tried.

Only all-numeric inputs are judged so: the cost of text or object inputs
follows their content, not their shape (one row of a megabyte of text), so they always
run on the thread. So do models of the custom and pickle flavors (the server gives them
``inline_seconds`` 0): their predict is any Python, whose cost can follow the values (a
loop over ``range(x)``), and an inline call cannot be cut short by the request timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

Arrays = dict[str, np.ndarray]
INLINE_SECONDS = 0.0005
PROBE_EVERY = 32  # thread calls between two tries of the loop, while the thread's timing allows
PROBE_FACTOR = 8.0  # how much dearer a call may look on the thread and still be tried inline
OUTLIER = 4.0  # the most one inline call counts for, in times its size class's average


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
        # size class (bit length of the values in all inputs) -> moving averages of the
        # time and the size of the inline calls in it
        self.costs: dict[int, tuple[float, float]] = {}
        # moving averages of the time and size of all calls on the thread (one class: they
        # only gate a try of the loop)
        self.thread_seconds: float | None = None
        self.thread_size = 1.0
        self._until_probe = 0  # thread calls left before the loop is tried again
        self._on_thread = 0  # calls running on the thread now

    def expected(self, size: int | None) -> float | None:
        """Seconds an inline call of ``size`` values is expected to take; None when unknown."""
        if size is None or not self.costs:
            return None
        wanted = size.bit_length()
        known = self.costs.get(wanted)
        if known is None:
            smaller = [k for k in self.costs if k < wanted]
            if not smaller:
                return self.costs[min(self.costs)][0]  # only bigger calls measured
            known = self.costs[max(smaller)]
        return _scaled(known[0], known[1], size)

    def learn(self, seconds: float, size: int) -> None:
        """One more inline call of ``size`` values took ``seconds``.

        A call counts for at most ``OUTLIER`` times its class's average: by the clock,
        a call during which the OS ran another process (the other worker, the client)
        can take 10x its time, and one such call must not send its class to the thread,
        where only a try once in ``PROBE_EVERY`` calls could bring it back.
        """
        cls = size.bit_length()
        known = self.costs.get(cls)
        if known is None:
            self.costs[cls] = (seconds, float(size))
        else:
            self.costs[cls] = _averaged(*known, min(seconds, OUTLIER * known[0]), size)

    def _inline(self, size: int | None) -> bool:
        if size is None or self.inline_seconds <= 0:
            return False
        expected = self.expected(size)
        if expected is not None and expected < self.inline_seconds:
            return True
        if self.thread_seconds is None:
            return False  # never measured anywhere: the loop is not risked
        guess = _scaled(self.thread_seconds, self.thread_size, size)
        if guess >= PROBE_FACTOR * self.inline_seconds:
            return False
        if self._until_probe > 0:
            self._until_probe -= 1
            return False
        self._until_probe = PROBE_EVERY
        return True

    async def __call__(self, arrays: Arrays) -> Arrays:
        size = _numeric_size(arrays)
        if self._inline(size):
            assert size is not None
            started, cpu = time.perf_counter(), time.thread_time()
            out = self.predict(arrays)
            # The clock is the stall the loop sees, unless calls on the thread shared the
            # GIL meanwhile: then it is theirs too, and the loop's own CPU time is the call's.
            clean = not self._on_thread
            seconds = time.perf_counter() - started if clean else time.thread_time() - cpu
            self.learn(seconds, size)
            return out
        loop = asyncio.get_running_loop()
        self._on_thread += 1
        try:
            out, seconds = await loop.run_in_executor(self.executor, self._timed, arrays)
        finally:
            self._on_thread -= 1
        if size is not None:  # text or objects never run inline: their cost need not be learnt
            self.thread_seconds, self.thread_size = _averaged(
                self.thread_seconds, self.thread_size, seconds, size
            )
        return out

    def _timed(self, arrays: Arrays) -> tuple[Arrays, float]:
        # timed on the thread itself: the hop is not the model's cost. The clock, not the
        # CPU time: a model that waits (on its own threads, say) is cheap only by the latter.
        started = time.perf_counter()
        out = self.predict(arrays)
        return out, time.perf_counter() - started


def _scaled(seconds: float, usual_size: float, size: int) -> float:
    """A call of ``size`` values, from the usual call's time and size: never cheaper."""
    return seconds * max(1.0, size / usual_size)


def _averaged(seconds: float | None, size: float, new_seconds: float, new_size: int) -> tuple[float, float]:  # fmt: skip
    """The moving averages of time and size with one more call (the first call sets them)."""
    if seconds is None:
        return new_seconds, float(new_size)
    return 0.8 * seconds + 0.2 * new_seconds, 0.8 * size + 0.2 * new_size


def _numeric_size(arrays: Arrays) -> int | None:
    """Values in all inputs (at least 1); None when any input is not numbers."""
    size = 0
    for arr in arrays.values():
        if arr.dtype.kind not in "biuf":
            return None
        size += arr.size
    return max(size, 1)
