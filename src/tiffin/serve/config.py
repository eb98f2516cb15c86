"""``ServeConfig``: the server's options, checked together; the CLI fills them from its flags."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from .budget import DEFAULT_BUDGET


@dataclass
class ServeConfig:
    """Server options; the CLI fills them from its flags."""

    max_body: int = 64 << 20
    timeout: float = 30.0
    queue_size: int = 256
    batching: bool = True
    max_batch_size: int | None = None
    max_latency_ms: float | None = None
    token: str | None = None
    threads: int | None = None
    drain_delay: float = 0.0
    # request body bytes held at once by one worker, across its connections (budget.py)
    max_buffered_bytes: int = DEFAULT_BUDGET
    # a body must arrive at this many bytes a second after the first body_grace seconds
    # (408 otherwise); 0 turns the floor off
    min_body_rate: float = 1024.0
    body_grace: float = 5.0
    metrics_public: bool = False  # /metrics without the token even when --token is set

    def __post_init__(self) -> None:
        if self.max_buffered_bytes < self.max_body:
            raise UsageError(
                f"--max-buffered-bytes {self.max_buffered_bytes} is less than --max-body "
                f"{self.max_body}: the largest allowed body could never be read",
                fix=f"raise --max-buffered-bytes to at least {self.max_body}, or lower --max-body",
            )
