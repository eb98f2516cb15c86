"""The process-wide budget for request bytes, the body rate floor and a token-guarded /metrics.

In process: the body reader and the inference endpoints give back every byte they took,
on every path (answered, refused, malformed, cut off, cancelled). Over real HTTP: a
`tiffin serve` process under hundreds of stalled gzip bodies that inflate a thousand
times keeps its memory under the budget plus a margin, refuses what does not fit with
503 and Retry-After, answers other clients meanwhile and answers every body it took.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import select
import socket
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve.conftest import Served, start, stop
from tests.serve.test_http import body_of, read_answer, status_of
from tiffin.errors import UsageError
from tiffin.serve import limits
from tiffin.serve.app import create_app
from tiffin.serve.budget import REPORT_EVERY, Budget
from tiffin.serve.config import ServeConfig
from tiffin.serve.errors import HTTPError
from tiffin.serve.limits import INFLATER_BYTES, STEP
from tiffin.serve.protocols.v2 import V2
from tiffin.serve.runner import build_repository

IRIS = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}  # fmt: skip
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PAD = 1_000_000  # spaces inside each attacking body: a kilobyte of gzip
BUDGET = 32 << 20
# What the server may hold beyond its budget under the attack: 300 connections' protocol
# objects, transports and read buffers, and the allocator's slack (measured: about 3 MiB; see
# docs/serving-limits.md).
MARGIN = 16 << 20
CONNECTIONS = 300


def channel(*chunks: bytes, disconnect: bool = False, stall: bool = False) -> Any:
    """An ASGI receive channel that hands over ``chunks``, then ends, leaves or stalls."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1 or disconnect or stall}
        for i, c in enumerate(chunks)
    ]  # fmt: skip
    if disconnect:
        messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # a client that sends nothing more
        raise AssertionError("unreachable")

    return receive


def read(budget: Budget, receive: Any, headers: dict[bytes, bytes], limit: int = 10 << 20) -> bytes:
    return asyncio.run(limits.read_body(receive, headers, limit, budget))


GZ = {b"content-encoding": b"gzip"}


# -- the body reader ------------------------------------------------------------------
def test_a_read_body_stays_taken_until_given_back() -> None:
    budget = Budget(1 << 20)
    assert read(budget, channel(b"ab", b"cd"), {}) == b"abcd"
    assert budget.used == 4  # the caller holds it until the answer
    budget.give(4)
    body = read(budget, channel(gzip.compress(b"x" * 5000)), GZ)
    assert body == b"x" * 5000 and budget.used == 5000  # the inflater's share is back


def test_every_failure_gives_everything_back() -> None:
    budget = Budget(1 << 20)
    bomb = gzip.compress(b" " * 50_000)
    small = gzip.compress(bytes(range(256)) * 3)
    cases = [
        (channel(b"x" * 600, b"x" * 600), {}, 413),  # past --max-body while streaming
        (channel(bomb), GZ, 413),  # expands past --max-body
        (channel(b"not gzip at all"), GZ, 400),
        (channel(small[:-20]), GZ, 400),  # truncated
        (channel(b"abc", disconnect=True), {}, 400),
        (channel(small[:200], disconnect=True), GZ, 400),
    ]
    for receive, headers, status in cases:
        with pytest.raises(HTTPError) as err:
            read(budget, receive, headers, limit=1000)
        assert err.value.status == status
        assert budget.used == 0, (status, budget.used)


def test_a_body_past_the_budget_is_503_with_retry_after_and_gives_back() -> None:
    budget = Budget(200_000)
    budget.take(150_000)  # other requests hold most of it
    with pytest.raises(HTTPError) as err:
        read(budget, channel(gzip.compress(b" " * 100_000)), GZ)
    assert err.value.status == 503 and err.value.headers == {"Retry-After": "1"}
    assert "--max-buffered-bytes" in err.value.message
    assert budget.used == 150_000
    with pytest.raises(HTTPError) as err:
        read(budget, channel(b"x" * 30_000, b"x" * 30_000), {})
    assert err.value.status == 503 and budget.used == 150_000
    assert read(budget, channel(b"x" * 30_000), {}) == b"x" * 30_000  # what fits is read


def test_inflated_bytes_are_counted_as_they_are_produced() -> None:
    """Refused after the first pieces, not after the whole expansion: at most one STEP
    is made past the budget (the whole body was inflated in one call, then counted)."""
    budget = Budget(3 * STEP)
    receive = channel(gzip.compress(b" " * (10 * STEP)))
    tracemalloc.start()
    try:
        with pytest.raises(HTTPError) as err:
            read(budget, receive, GZ, limit=20 * STEP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.status == 503 and budget.used == 0
    assert peak < 5 * STEP, peak


def test_bodies_of_whole_steps_inflate_completely() -> None:
    """A piece that fills its STEP exactly may leave output inside zlib with no input
    left; it is asked for, not taken as a truncated stream."""
    budget = Budget(8 * STEP)
    for size in (STEP, 2 * STEP, 2 * STEP + 1):
        data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        assert read(budget, channel(zlib.compress(data)), {b"content-encoding": b"deflate"}, limit=4 * STEP) == data  # fmt: skip
        budget.give(size)
        assert budget.used == 0


def test_a_cancelled_read_gives_back() -> None:
    budget = Budget(1 << 20)

    async def main() -> None:
        task = asyncio.create_task(limits.read_body(channel(b"abc", stall=True), {}, 1000, budget))
        await asyncio.sleep(0.01)
        assert budget.used == 3
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert budget.used == 0
    zipped = gzip.compress(b" " * 10_000)

    async def main_gz() -> None:
        receive = channel(zipped[:-10], stall=True)
        task = asyncio.create_task(limits.read_body(receive, GZ, 1 << 20, budget))
        await asyncio.sleep(0.01)
        assert budget.used >= INFLATER_BYTES
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main_gz())
    assert budget.used == 0


def test_a_budget_below_the_body_limit_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--max-buffered-bytes"):
        ServeConfig(max_body=1000, max_buffered_bytes=999)
    ServeConfig(max_body=1000, max_buffered_bytes=1000)


def test_a_full_budget_still_lets_each_held_body_finish() -> None:
    """Bodies that arrived in pieces are joined at the end; a budget already full of
    them must not refuse the join, or no held body could ever be answered."""
    budget = Budget(20_000)

    async def main() -> list[bytes]:
        tasks = []
        for _ in range(2):
            gate: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            gate.put_nowait({"type": "http.request", "body": b"x" * 9_000, "more_body": True})
            tasks.append(
                (gate, asyncio.create_task(limits.read_body(gate.get, {}, 10_000, budget)))
            )
        await asyncio.sleep(0.01)
        assert budget.used == 18_000
        for gate, _ in tasks:
            gate.put_nowait({"type": "http.request", "body": b"y" * 1_000, "more_body": False})
        return [await task for _, task in tasks]

    assert asyncio.run(main()) == [b"x" * 9_000 + b"y" * 1_000] * 2
    assert budget.used == 20_000


# -- the endpoints, in process ----------------------------------------------------------
def test_endpoints_give_back_slots_and_bytes_on_every_path(packages: dict[str, Path]) -> None:
    repo = build_repository([str(packages["iris"])], None, False)
    server = create_app(repo, ServeConfig(max_body=100_000, max_buffered_bytes=200_000, timeout=0.3)).server  # fmt: skip
    model = server.latest["iris"]
    good = json.dumps(IRIS).encode()

    async def infer(receive: Any, headers: dict[bytes, bytes] | None = None) -> int:
        answer = await server.answer(V2(), ("iris", None), headers or {}, receive)
        return answer[0]

    async def main() -> list[int]:
        codes = [
            await infer(channel(good)),
            await infer(channel(gzip.compress(good)), GZ),
            await infer(channel(b"{bad json")),
            await infer(channel(good[:10], disconnect=True)),
            await infer(channel(gzip.compress(b" " * 200_000)), GZ),  # 413
            await infer(channel(good[:10], stall=True)),  # 504 after --timeout
        ]
        server.budget.take(199_990)  # other bodies hold the budget: 503
        codes.append(await infer(channel(good)))
        server.budget.give(199_990)
        codes.append(await infer(channel(good[:10], b" " * 90_000, good[10:])))
        return codes

    assert asyncio.run(main()) == [200, 200, 400, 400, 413, 504, 503, 200]
    assert server.budget.used == 0 and model.in_flight == 0


def test_a_body_still_arriving_holds_a_queue_slot(packages: dict[str, Path]) -> None:
    repo = build_repository([str(packages["iris"])], None, False)
    server = create_app(repo, ServeConfig(queue_size=1, timeout=5)).server
    good = json.dumps(IRIS).encode()

    async def main() -> tuple[int, int, bytes]:
        slow = asyncio.create_task(server.answer(V2(), ("iris", None), {}, channel(good[:10], stall=True)))  # fmt: skip
        await asyncio.sleep(0.01)
        assert server.latest["iris"].in_flight == 1
        status, headers, payload = await server.answer(V2(), ("iris", None), {}, channel(good))
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
        return status, dict(headers).get(b"retry-after", b"") == b"1", payload

    status, retry, payload = asyncio.run(main())
    assert status == 503 and retry and b"in flight" in payload
    assert server.budget.used == 0 and server.latest["iris"].in_flight == 0


# -- over real HTTP ---------------------------------------------------------------------
def rss(served: Served) -> int:
    status = Path(f"/proc/{served.proc.pid}/status").read_text()
    return 1024 * int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))  # fmt: skip


def buffered(served: Served) -> float:
    text = httpx.get(f"{served.url}/metrics", timeout=10).text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("tiffin_buffered_request_bytes ")))  # fmt: skip


@pytest.fixture(scope="module")
def guarded(packages: dict[str, Path]) -> Iterator[Served]:
    """A token, a public /metrics, a 32 MiB budget, no rate floor (bodies stall at will)."""
    served = start(
        [str(packages["iris"]), "--token", TOKEN, "--metrics-public", "--max-body", "2000000",
         "--max-buffered-bytes", str(BUDGET), "--queue-size", "1000", "--min-body-rate", "0",
         "--timeout", "60"]
    )  # fmt: skip
    yield served
    stop(served)


def test_hundreds_of_stalled_gzip_bodies_stay_within_the_budget(guarded: Served) -> None:
    """300 clients each send a kilobyte of gzip that inflates to a megabyte, then stall:
    without the budget the server held 300 MB. Those that fit are held, the rest are
    503 with Retry-After, memory stays under the budget plus the margin, another client
    is answered meanwhile, and each held body, once finished, is answered in full."""
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        assert c.post("/v2/models/iris/infer", json=IRIS, headers=AUTH).status_code == 200
    time.sleep(0.2)
    baseline = rss(guarded)
    good = json.dumps(IRIS).encode()
    zipped = gzip.compress(good[:-1] + b" " * PAD + b"}")
    cut = len(zipped) - 40  # the end of the JSON and the gzip trailer are held back
    head = (
        b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % (TOKEN.encode(), len(zipped))
    )
    socks = [socket.create_connection(("127.0.0.1", guarded.port), timeout=10) for _ in range(CONNECTIONS)]  # fmt: skip
    answered: dict[socket.socket, bytes] = {}
    try:
        for sock in socks:
            sock.sendall(head + zipped[:cut])
        # the refusals come at once; wait until none has come for a second (bounded)
        deadline, quiet_since = time.monotonic() + 30, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 1.0:
            waiting = [s for s in socks if s not in answered]
            ready, _, _ = select.select(waiting, [], [], 0.2)
            for sock in ready:
                answered[sock] = read_answer(sock)
                quiet_since = time.monotonic()
        held = [s for s in socks if s not in answered]
        peak = rss(guarded)
        assert {status_of(a) for a in answered.values()} == {503}
        for answer in answered.values():
            assert b"\r\nretry-after: 1\r\n" in answer.lower()
            assert "--max-buffered-bytes" in body_of(answer)["error"]
        # each held body is most of PAD inflated (the rest waits in the gzip held back)
        assert BUDGET // (PAD + INFLATER_BYTES) - 2 <= len(held) <= BUDGET // (PAD * 9 // 10), len(held)  # fmt: skip
        assert len(held) * PAD * 9 // 10 < buffered(guarded) <= BUDGET
        assert peak - baseline < BUDGET + MARGIN, (baseline, peak)
        with httpx.Client(base_url=guarded.url, timeout=10) as c:  # others are answered
            r = c.post("/v2/models/iris/infer", json=IRIS, headers=AUTH)
            assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [0]
        for sock in held:  # nothing taken is lost: each finished body is answered
            sock.sendall(zipped[cut:])
        for sock in held:
            answer = read_answer(sock)
            assert status_of(answer) == 200, answer[:300]
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["outputs"][0]["data"] == [0]
    finally:
        for sock in socks:
            sock.close()
    print(f"\nRSS baseline {baseline >> 20} MiB, under attack {peak >> 20} MiB (+{(peak - baseline) >> 20} MiB), "
          f"budget {BUDGET >> 20} MiB, margin {MARGIN >> 20} MiB; {len(held)} held, {len(answered)} refused")  # fmt: skip
    deadline = time.monotonic() + 5
    while buffered(guarded) != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert buffered(guarded) == 0  # every byte taken was given back


@pytest.fixture(scope="module")
def floored(packages: dict[str, Path]) -> Iterator[Served]:
    """A token, a private /metrics, a floor of 1000 bytes a second after 1 s, one slot."""
    served = start(
        [str(packages["iris"]), "--token", TOKEN, "--min-body-rate", "1000", "--body-grace", "1",
         "--queue-size", "1", "--timeout", "30"]
    )  # fmt: skip
    yield served
    stop(served)


def _trickle(served: Served, headers: bytes, body: bytes, pieces: int, pause: float) -> tuple[bytes, float]:  # fmt: skip
    """Send ``body`` in ``pieces`` with ``pause`` seconds between; the answer and its time."""
    head = b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%sContent-Length: %d\r\n\r\n"  # fmt: skip
    step = -(-len(body) // pieces)
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(head % (TOKEN.encode(), headers, len(body)))
        for i in range(pieces):
            ready, _, _ = select.select([sock], [], [], pause)
            if ready:
                break  # answered (and closed) before the whole body was sent
            try:
                sock.sendall(body[i * step : (i + 1) * step])
            except (BrokenPipeError, ConnectionResetError):
                break
        return read_answer(sock), time.monotonic() - started


def test_a_body_slower_than_the_floor_is_408_and_frees_its_slot(floored: Served) -> None:
    good = json.dumps(IRIS).encode()
    answer, took = _trickle(floored, b"", good, len(good), 0.25)  # 4 bytes a second
    assert (
        status_of(answer) == 408 and "slower than 1000 bytes a second" in body_of(answer)["error"]
    )
    assert b"connection: close" in answer.lower() and 0.9 < took < 5, took
    zipped = gzip.compress(good[:-1] + b" " * 100_000 + b"}")
    answer, took = _trickle(floored, b"Content-Encoding: gzip\r\n", zipped, 40, 0.25)
    assert status_of(answer) == 408 and took < 5, took
    # the queue's one slot came back: a normal request is served
    with floored.client() as c:
        assert c.post("/v2/models/iris/infer", json=IRIS, headers=AUTH).status_code == 200


def test_a_body_above_the_floor_is_served(floored: Served) -> None:
    good = json.dumps(IRIS).encode()
    padded = good[:-1] + b" " * 6000 + b"}"  # 6 KB over 1.5 s: above 1000 bytes a second
    answer, took = _trickle(floored, b"", padded, 6, 0.25)
    assert status_of(answer) == 200 and took > 1.2, (took, answer[:300])


def test_metrics_need_the_token_unless_public(floored: Served, guarded: Served) -> None:
    """The 404s hid model names from clients without the token; /metrics listed them."""
    with floored.client() as c:
        r = c.get("/metrics")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "iris" not in r.text and "tiffin_" not in r.text
        assert 'model="iris"' in c.get("/metrics", headers=AUTH).text
        assert c.get("/v2/health/ready").status_code == 200  # probes stay open
    assert httpx.get(f"{guarded.url}/metrics", timeout=10).status_code == 200  # --metrics-public


def test_changes_are_reported_at_most_once_per_period() -> None:
    """With several workers each reports its own figure to the shared gauge files."""
    seen: list[int] = []
    budget = Budget(1000, report=seen.append)
    budget.take(10)  # outside a loop: at once
    assert seen == [10]

    async def main() -> None:
        for _ in range(50):
            budget.take(5)
            budget.give(2)
        await asyncio.sleep(REPORT_EVERY * 3)

    asyncio.run(main())
    assert seen == [10, 160]


def test_the_cli_refuses_a_budget_below_the_body_limit() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "serve", "pkg", "--max-body", "100", "--max-buffered-bytes", "50"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (
        proc.returncode == 2
        and "--max-buffered-bytes 50 is less than --max-body 100" in proc.stderr
    )
