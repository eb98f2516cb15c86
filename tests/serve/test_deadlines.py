"""Deadlines: the per-request timeout from one sweep; only its own cancellations become 504s."""

from __future__ import annotations

import asyncio
import time

import pytest

from tiffin.serve.deadlines import Deadlines


def test_a_request_past_its_deadline_gets_timeout_error_soon_after() -> None:
    deadlines = Deadlines(0.2)

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="0.2 s"):
            await deadlines.within(asyncio.sleep(5))
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # answered: no cancel left over
        await asyncio.sleep(0)  # and the task goes on running normally
        return time.monotonic() - started

    took = asyncio.run(main())
    assert 0.2 <= took < 0.2 + deadlines.period + 0.2


def test_requests_in_time_are_untouched_and_the_sweep_stops_when_none_are_left() -> None:
    deadlines = Deadlines(0.3)

    async def one(i: int) -> int:
        await asyncio.sleep(0.01 * (i % 5))
        return i

    async def main() -> list[int]:
        out = await asyncio.gather(*(deadlines.within(one(i)) for i in range(50)))
        await asyncio.sleep(deadlines.period * 2)
        assert deadlines._sweeping is None and not deadlines._due
        return list(out)

    assert asyncio.run(main()) == list(range(50))


def test_only_the_overdue_requests_are_cut() -> None:
    deadlines = Deadlines(0.3)

    async def request(delay: float) -> str:
        async def work() -> str:
            await asyncio.sleep(delay)
            return "ok"

        try:
            return await deadlines.within(work())
        except TimeoutError:
            return "timeout"

    async def main() -> list[str]:
        return list(await asyncio.gather(request(0.05), request(2), request(0.1), request(3)))

    assert asyncio.run(main()) == ["ok", "timeout", "ok", "timeout"]


def test_another_cancellation_stays_a_cancellation() -> None:
    deadlines = Deadlines(10)

    async def main() -> None:
        task = asyncio.ensure_future(deadlines.within(asyncio.sleep(5)))
        await asyncio.sleep(0.05)
        task.cancel()  # a server stopping, say: not a timeout
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_each_event_loop_gets_its_own_sweep() -> None:
    # one server object, run by one loop after another (tests, restarts in a process)
    deadlines = Deadlines(0.1)

    async def overdue() -> None:
        with pytest.raises(TimeoutError):
            await deadlines.within(asyncio.sleep(3))

    asyncio.run(overdue())
    asyncio.run(overdue())
