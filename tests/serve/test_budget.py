"""The process-wide budget of request body bytes: taking, refusing, giving back, reporting.

The budget's work inside the body reader and the endpoints, and a real server under
stalled bodies, are in ``test_memory_budget.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from tiffin.serve.budget import REPORT_EVERY, Budget
from tiffin.serve.errors import HTTPError


def test_bytes_taken_are_held_until_given_back() -> None:
    budget = Budget(100)
    budget.take(60)
    budget.take(40)  # exactly the limit fits
    assert budget.used == 100
    budget.give(60)
    assert budget.used == 40


def test_a_take_past_the_limit_is_503_with_retry_after_and_takes_nothing() -> None:
    budget = Budget(100)
    budget.take(70)
    with pytest.raises(HTTPError) as info:
        budget.take(31)
    assert info.value.status == 503
    assert info.value.headers == {"Retry-After": "1"}
    assert "70 bytes" in info.value.message and "31 more" in info.value.message
    assert "--max-buffered-bytes" in info.value.message
    assert budget.used == 70


def test_outside_an_event_loop_every_change_is_reported_at_once() -> None:
    seen: list[int] = []
    budget = Budget(100, report=seen.append)
    budget.take(10)
    budget.give(4)
    assert seen == [10, 6]


def test_on_an_event_loop_changes_are_reported_once_per_interval_with_the_last_figure() -> None:
    seen: list[int] = []

    async def main() -> None:
        budget = Budget(1_000, report=seen.append)
        for _ in range(50):
            budget.take(10)
        budget.give(100)
        assert seen == []  # nothing written per change
        await asyncio.sleep(REPORT_EVERY * 3)
        assert seen == [400]
        budget.give(400)
        await asyncio.sleep(REPORT_EVERY * 3)

    asyncio.run(main())
    assert seen == [400, 0]
