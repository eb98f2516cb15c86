"""The process-wide budget for request bytes held in memory (``--max-buffered-bytes``).

``--max-body`` bounds one request; it cannot bound many. Three hundred clients that
each send a kilobyte of gzip which inflates to a megabyte, then stall, made one server
hold about 300 MB for 300 KB received. Every request body the server holds counts
against one budget shared by all of a worker's connections: the raw chunks of a plain
body, the compressed chunk being inflated, the inflated pieces of a gzip or deflate
body as each is produced, and the state of its inflater. (The copy the pieces are
joined into at the end is momentary, made and handed on with no other request running
in between, so it is the one thing not counted: at most one ``--max-body`` past the
budget, for an instant.) A request whose next bytes do not
fit is answered 503 with ``Retry-After`` and everything it held is given back, so a
flood of slow or bloated bodies meets a fixed ceiling while small requests still fit.

The body reader (``limits.read_body``) takes and gives back; a request that was read
keeps its body's length taken until it is answered (``Server._infer``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .errors import HTTPError

DEFAULT_BUDGET = 256 << 20  # four bodies of the default --max-body (64 MiB) at once
REPORT_EVERY = 0.05  # seconds: the gauge lags the true figure by at most this


class Budget:
    """Bytes of request bodies held at once, across every connection of this process."""

    __slots__ = ("_due_on", "limit", "report", "used")

    def __init__(self, limit: int, report: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self.used = 0
        # called with ``used`` at most once per REPORT_EVERY: the metrics gauge of a
        # worker among several (one process alone reads ``used`` at each scrape)
        self.report = report
        self._due_on: asyncio.AbstractEventLoop | None = None

    def take(self, size: int) -> None:
        """Hold ``size`` more bytes; 503 with ``Retry-After`` when they do not fit."""
        if self.used + size > self.limit:
            raise HTTPError(
                503,
                f"the server holds {self.used} bytes of request bodies and this one needs "
                f"{size} more, past its budget of {self.limit} (--max-buffered-bytes); "
                "retry shortly",
                {"Retry-After": "1"},
            )
        self.used += size
        if self.report is not None:
            self._changed()

    def give(self, size: int) -> None:
        """Give back ``size`` bytes taken earlier."""
        self.used -= size
        if self.report is not None:
            self._changed()

    def _changed(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not served (a test, a script): report at once
            self._write()
            return
        if self._due_on is not loop:
            self._due_on = loop
            loop.call_later(REPORT_EVERY, self._write)

    def _write(self) -> None:
        self._due_on = None
        if self.report is not None:
            self.report(self.used)
