"""The load generators of ``benchmarks/serve.py``: wrk, or an asyncio HTTP/1.1 client.

Each keeps ``connections`` keep-alive connections busy with one request for
``TIFFIN_BENCH_SECONDS`` and returns requests/s, p50 and p99 latency and errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

DURATION = float(os.environ.get("TIFFIN_BENCH_SECONDS", "5"))


_GIVEN: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before: a model's servers are given their
    ports all before any of them binds, and the kernel may offer a closed port again."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def wrk(url: str, body: bytes, connections: int) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("P50 %d\\nP99 %d\\n", latency:percentile(50), latency:percentile(99)))\n'
        "end\n"
    )
    threads = min(connections, 2)
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{DURATION:g}s",
            "--timeout", "10s", "-s", str(script), url]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    script.unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"P50 (\d+)", out).group(1)) / 1000  # type: ignore[union-attr]
    p99 = float(re.search(r"P99 (\d+)", out).group(1)) / 1000  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors}


async def _client(host: str, port: int, request: bytes, until: float, lat: list[float]) -> int:
    """One keep-alive connection sending ``request`` until ``until``; returns errors."""
    errors = 0
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            lat.append(time.perf_counter() - started)
            errors += not head.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    return errors


async def _drive(url: str, body: bytes, connections: int) -> dict[str, float]:
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    assert m is not None
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    lat: list[float] = []
    until = time.perf_counter() + DURATION
    results = await asyncio.gather(
        *(_client(host, port, request, until, lat) for _ in range(connections)),
        return_exceptions=True,
    )
    errors = sum(r if isinstance(r, int) else 1 for r in results)
    arr = np.array(lat) * 1000
    return {
        "rps": len(lat) / DURATION,
        "p50_ms": float(np.percentile(arr, 50)) if len(arr) else 0.0,
        "p99_ms": float(np.percentile(arr, 99)) if len(arr) else 0.0,
        "errors": errors,
    }


def asyncio_load(url: str, body: bytes, connections: int) -> dict[str, float]:
    """The fallback when wrk is missing (one Python process: it tops out near 10k req/s)."""
    return asyncio.run(_drive(url, body, connections))


LOAD = wrk if shutil.which("wrk") else asyncio_load
