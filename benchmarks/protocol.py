"""The direct lane against uvicorn's ASGI path: Python CPU per one-row infer request.

``tiffin serve`` answers inference POSTs without ASGI (``serve/http.py``). This
drives tiffin's real protocol class and app in one process, with in-memory transports
(no sockets, no load generator: what is left is the Python work of a request, from the
bytes of its head to the bytes of its answer), C connections each sending one-row
requests, and measures process CPU per request: with the direct lane, and with it off
(every request through uvicorn's cycle and the ASGI app, as before). Two models: a
trivial one (HTTP, JSON, signature and batching only) and the small PyTorch MLP of
``benchmarks/serve.py``. Rounds interleave the two lanes; the table shows medians.

    TIFFIN_BENCH_ROUNDS=5 python benchmarks/protocol.py
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json

ROUNDS = int(os.environ.get("TIFFIN_BENCH_ROUNDS", "5"))
CONNECTIONS = 8
REQUESTS = 20_000


class _Transport:
    """What uvicorn's protocol asks of a transport; counts the answers written."""

    def __init__(self) -> None:
        self.answers = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.answers += data.startswith(b"HTTP/1.1 ")

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def make_package(work: Path) -> Path:
    import torch

    import tiffin

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from serve import MLP_SRC

    (work / "mlp_model.py").write_text(MLP_SRC)
    sys.path.insert(0, str(work))
    from mlp_model import MLP  # type: ignore[import-not-found]

    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(5, 20)).astype(np.float32)
    init = {"options": {"init_kwargs": {"hidden": 256, "depth": 2}}}
    return tiffin.pack(MLP().eval(), work / "mlp", name="mlp", version="1", example=x, **init).path


async def drive(protocol_class: Any, config: Any, request: bytes) -> float:
    """Process CPU seconds per request for REQUESTS requests over CONNECTIONS connections."""
    from uvicorn.server import ServerState

    state = ServerState()
    connections = []
    for _ in range(CONNECTIONS):
        protocol = protocol_class(config=config, server_state=state, app_state={})
        transport = _Transport()
        protocol.connection_made(transport)
        connections.append((protocol, transport))
    started = time.process_time()
    for sent in range(1, REQUESTS // CONNECTIONS + 1):
        for protocol, _ in connections:
            protocol.data_received(request)
        while any(t.answers < sent for _, t in connections):
            await asyncio.sleep(0)
    seconds = time.process_time() - started
    for protocol, _ in connections:
        protocol.connection_lost(None)
    return seconds / (REQUESTS // CONNECTIONS * CONNECTIONS)


def main() -> None:
    import torch
    import uvicorn
    import uvloop

    from tiffin.serve.app import create_app
    from tiffin.serve.http import bounded_protocol
    from tiffin.serve.repository import Repository, from_paths

    torch.set_num_threads(1)  # as each server worker runs it
    work = Path(tempfile.mkdtemp(prefix="tiffin-protocol-bench-"))
    repo = Repository()
    for predictor in from_paths([make_package(work)], allow_pickle=False):
        repo.add(predictor)
    row = np.random.default_rng(1).normal(size=20).astype(np.float32).tolist()
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP32", "data": row}]}).encode()  # fmt: skip
    request = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)  # fmt: skip

    results: dict[str, dict[str, list[float]]] = {}
    for model in ("trivial", "mlp"):
        app = create_app(repo)
        if model == "trivial":  # the model's cost out of the way: HTTP, JSON, checks, batching
            served = app.server.models[("mlp", "1")]
            placement: Any = served.batcher.predict if served.batcher else served.run
            placement.predict = lambda a: {"output": np.zeros((len(a["input"]), 2), np.float32)}
        lanes = {}
        for lane, direct in (("direct lane", app.post_handler), ("ASGI (direct lane off)", None)):
            config = uvicorn.Config(app, http=bounded_protocol(30.0, direct=direct), lifespan="off",
                                    log_level="warning", access_log=False, server_header=False)  # fmt: skip
            config.load()
            lanes[lane] = config
        for config in lanes.values():  # warm-up: first calls, placement, caches
            uvloop.run(drive(config.http_protocol_class, config, request))
        for _ in range(ROUNDS):
            for lane, config in lanes.items():
                per_request = uvloop.run(drive(config.http_protocol_class, config, request))
                results.setdefault(model, {}).setdefault(lane, []).append(per_request * 1e6)
        print(f"[done] {model}", file=sys.stderr)

    rows, out = [], {}
    for model, lanes_us in results.items():
        base = statistics.median(lanes_us["ASGI (direct lane off)"])
        for lane, values in lanes_us.items():
            med = statistics.median(values)
            rows.append([model, lane, f"{med:.1f}", f"{med / base:.2f}x"])
            out[f"{model}: {lane}"] = {"median_us": med, "rounds_us": values}
    print(table(["model", "path", "µs CPU / request", "vs ASGI"], rows))
    path = write_json("protocol", {"connections": CONNECTIONS, "rounds": ROUNDS, "results": out})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
