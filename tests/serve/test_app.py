"""MLflow formats, metrics, OpenAPI, batching, and graceful shutdown over real HTTP."""

from __future__ import annotations

import json
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve.conftest import Served, start, stop

ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def iris_only(packages: dict[str, Path]) -> Served:
    served = start([str(packages["iris"])])
    yield served  # type: ignore[misc]
    stop(served)


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [ROW, ROW]},
        {"inputs": [ROW, ROW]},
        {"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [ROW, ROW]}},
        {"dataframe_records": [dict(zip("abcd", ROW)), dict(zip("abcd", ROW))]},
    ],
)
def test_invocations_mlflow_formats(iris_only: Served, body: dict[str, object]) -> None:
    with iris_only.client() as c:
        r = c.post("/invocations", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [0, 0]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"nothing": 1}, "exactly one of"),
        ({"instances": [[1, 2]]}, "expects shape"),
        ([1], "JSON object"),
    ],
)
def test_invocations_errors(iris_only: Served, body: object, message: str) -> None:
    with iris_only.client() as c:
        r = c.post("/invocations", json=body)
    assert r.status_code == 400 and message in r.json()["error"]


def test_invocations_needs_one_model(server: Served) -> None:
    with server.client() as c:
        r = c.post("/invocations", json={"instances": [ROW]})
    assert r.status_code == 400 and "models are served" in r.json()["error"]


def test_openapi_and_metrics(server: Served) -> None:
    with server.client() as c:
        doc = c.get("/v2/openapi.json").json()
        assert doc["openapi"].startswith("3.")
        assert "/v2/models/multi/infer" in doc["paths"]
        c.post(
            "/v2/models/iris/infer",
            json={"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROW}]},
        )
        text = c.get("/metrics").text
    assert 'tiffin_requests_total{code="200",endpoint="infer",model="iris",version="2"}' in text
    assert "tiffin_request_latency_seconds_bucket" in text
    assert "tiffin_queue_depth" in text
    assert "tiffin_batch_rows_bucket" in text


def test_concurrent_requests_are_merged(iris_only: Served) -> None:
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    )

    def call(_: int) -> int:
        with httpx.Client(base_url=iris_only.url, timeout=30) as c:
            return sum(
                c.post("/v2/models/iris/infer", content=body).status_code == 200 for _ in range(25)
            )

    with ThreadPoolExecutor(16) as pool:
        assert sum(pool.map(call, range(16))) == 400
    with iris_only.client() as c:
        text = c.get("/metrics").text
    count = sum_ = 0.0
    for line in text.splitlines():
        if line.startswith("tiffin_batch_requests_count"):
            count = float(line.split()[-1])
        if line.startswith("tiffin_batch_requests_sum"):
            sum_ = float(line.split()[-1])
    assert sum_ >= 400 and count < sum_, (count, sum_)  # fewer predict calls than requests


def test_sigterm_finishes_in_flight_and_exits_zero(packages: dict[str, Path]) -> None:
    served = start([str(packages["multi"])])
    slow = {
        "inputs": [
            {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
            {"name": "n", "shape": [1], "datatype": "INT64", "data": [1]},
            {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["slow"]},
        ]
    }
    result: list[int] = []

    def call() -> None:
        with served.client() as c:
            result.append(c.post("/v2/models/multi/infer", json=slow).status_code)

    t = threading.Thread(target=call)
    t.start()
    import time

    time.sleep(0.5)
    served.proc.send_signal(signal.SIGTERM)
    t.join()
    assert result == [200]
    assert served.proc.wait(20) == 0
    stop(served)


def test_repository_and_dataframe_columns(packages: dict[str, Path]) -> None:
    served = start(["--repository", str(packages["root"])])
    try:
        with served.client() as c:
            assert c.get("/v2/models/iris/versions/1/ready").json()["ready"] is True
            assert c.get("/v2/models/iris/versions/2").json()["versions"] == ["2"]
            meta = c.get("/v2/models/table").json()
            assert meta["inputs"] == [
                {"name": "city", "datatype": "BYTES", "shape": [-1]},
                {"name": "age", "datatype": "FP64", "shape": [-1]},
            ]
            body = {"inputs": [
                {"name": "city", "datatype": "BYTES", "shape": [2], "data": ["paris", "nice"]},
                {"name": "age", "datatype": "FP64", "shape": [2], "data": [20.0, 40.0]},
            ]}  # fmt: skip
            r = c.post("/v2/models/table/infer", json=body)
            assert r.status_code == 200, r.text
            assert r.json()["outputs"][0]["shape"] == [2]
            body["inputs"][1]["datatype"] = "BYTES"
            body["inputs"][1]["data"] = ["x", "y"]
            r = c.post("/v2/models/table/infer", json=body)
            assert r.status_code == 400 and "age" in r.json()["error"]
    finally:
        stop(served)


def test_invocations_on_a_dataframe_model(packages: dict[str, Path]) -> None:
    served = start([str(packages["table"])])
    try:
        with served.client() as c:
            for body in (
                {"dataframe_split": {"columns": ["city", "age"], "data": [["paris", 20.0], ["nice", 40.0]]}},
                {"dataframe_records": [{"city": "paris", "age": 20.0}, {"city": "nice", "age": 40.0}]},
            ):  # fmt: skip
                r = c.post("/invocations", json=body)
                assert r.status_code == 200, r.text
                assert len(r.json()["predictions"]) == 2
            r = c.post("/invocations", json={"dataframe_records": [{"city": 3, "age": 20.0}]})
            assert r.status_code == 400 and "city" in r.json()["error"]
            # zero rows: answered from the signature (scikit-learn raises on an empty batch)
            empty = {"dataframe_split": {"columns": ["city", "age"], "data": []}}
            r = c.post("/invocations", json=empty)
            assert (r.status_code, r.json()) == (200, {"predictions": []}), r.text
            v2 = {"inputs": [{"name": "city", "shape": [0], "datatype": "BYTES", "data": []},
                             {"name": "age", "shape": [0], "datatype": "FP64", "data": []}]}  # fmt: skip
            r = c.post("/v2/models/table/infer", json=v2)
            assert r.status_code == 200, r.text
            assert [(o["shape"], o["data"]) for o in r.json()["outputs"]] == [([0], [])]
            r = c.post(
                "/invocations", content=b"city,age\nparis,20", headers={"Content-Type": "text/csv"}
            )
            assert r.status_code == 415
    finally:
        stop(served)


def test_large_bodies_are_decoded_off_the_event_loop(
    packages: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 57 MB JSON body took 8 s to decode on the event loop, which answered nothing
    else meanwhile; large bodies and outputs now go to the codec thread."""
    import asyncio

    import tiffin
    from tiffin.serve.app import OFFLOAD_BYTES, Server
    from tiffin.serve.config import ServeConfig
    from tiffin.serve.protocols import v2
    from tiffin.serve.repository import Repository

    repo = Repository()
    repo.add(tiffin.load(packages["iris2"]))  # predict_proba: 3 FP64 values out per row
    server = Server(repo, ServeConfig())
    threads: list[tuple[str, str]] = []
    for step in ("decode_request", "encode_response"):
        real = getattr(v2, step)

        def recorded(*args: object, _real: Any = real, _step: str = step) -> object:
            threads.append((_step, threading.current_thread().name))
            return _real(*args)

        monkeypatch.setattr(v2, step, recorded)

    async def infer(rows: int) -> int:
        body = json.dumps({"inputs": [{"name": "input", "datatype": "FP64", "shape": [rows, 4], "data": ROW * rows}]}).encode()  # fmt: skip

        async def receive() -> dict[str, object]:  # the whole body in one message
            return {"type": "http.request", "body": body, "more_body": False}

        status, _, _ = await server.answer(v2.V2(), ("iris", None), {}, receive)
        assert status == 200
        return len(body)

    try:
        assert asyncio.run(infer(1)) < OFFLOAD_BYTES
        small = list(threads)
        threads.clear()
        assert asyncio.run(infer(60_000)) >= OFFLOAD_BYTES  # and 60,000 x 3 FP64 out: 1.4 MB
        large = list(threads)
    finally:
        server.codec_pool.shutdown()
        server.executor.shutdown()
    here = threading.current_thread().name
    assert small == [("decode_request", here), ("encode_response", here)]  # one row: the loop
    assert [step for step, _ in large] == ["decode_request", "encode_response"]
    assert all(thread.startswith("tiffin-codec") for _, thread in large)


def test_a_large_json_request_over_real_http(iris_only: Served) -> None:
    rows = 60_000  # about 1.5 MB of JSON: over the offload threshold
    body = {"inputs": [{"name": "input", "shape": [rows, 4], "datatype": "FP64", "data": ROW * rows}]}  # fmt: skip
    with iris_only.client() as c:
        r = c.post("/v2/models/iris/infer", content=json.dumps(body))
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [rows]


def test_a_model_refusing_nan_is_a_400_for_the_client_not_a_500(iris_only: Served) -> None:
    """scikit-learn refuses NaN ("Input X contains NaN"): the input's fault, not the server's."""
    import numpy as np

    with iris_only.client() as c:
        r = c.post("/invocations", json={"instances": [[5.1, None, 1.4, 0.2]]})  # null is NaN
        assert r.status_code == 400, r.text
        assert "NaN or infinite" in r.json()["error"] and "contains NaN" in r.json()["error"]
        raw = np.array([[5.1, np.inf, 1.4, 0.2]]).tobytes()
        header = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64",
                              "parameters": {"binary_data_size": len(raw)}}]}  # fmt: skip
        head = json.dumps(header).encode()
        r = c.post(
            "/v2/models/iris/infer", content=head + raw,
            headers={"Inference-Header-Content-Length": str(len(head))},
        )  # fmt: skip
        assert r.status_code == 400 and "NaN or infinite" in r.json()["error"], r.text
        r = c.post("/invocations", json={"instances": [ROW]})  # and the model still answers
        assert r.status_code == 200


def test_a_request_kind_that_passed_the_check_is_remembered_and_others_still_checked(
    packages: dict[str, Path],
) -> None:
    import asyncio

    import numpy as np

    from tiffin.errors import SignatureError
    from tiffin.serve.app import create_app
    from tiffin.serve.repository import from_paths

    app = create_app(from_paths([packages["iris"], packages["multi"], packages["table"]]))
    iris = app.server.models[("iris", "1")]
    assert iris.batcher is not None
    placement = iris.batcher.predict
    calls: list[int] = []
    real_predict = placement.predict

    def predict(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(arrays["input"]))
        return real_predict(arrays)

    placement.predict = predict
    good = {"input": np.ones((1, 4))}

    async def go() -> None:
        assert (await iris.infer(good))["output"].shape == (1,)
        assert (await iris.infer({"input": np.ones((3, 4))}))["output"].shape == (3,)
        assert len(iris.checked_kinds) == 1  # the batch axis is free: one kind
        bad = [
            {"input": np.ones((1, 5))},  # a trailing axis of the wrong size
            {"input": np.ones((1, 4, 1))},  # one axis too many
            {"input": np.ones((1, 4), np.complex128)},  # no safe cast to the model's dtype
            {"input": np.ones((1, 4)), "extra": np.ones((1, 4))},  # an unknown input
            {"other": np.ones((1, 4))},  # the model's input missing
        ]
        for arrays in bad:  # refused before they queue: the model never sees them
            with pytest.raises(SignatureError):
                await iris.infer(arrays)
            assert (await iris.infer(good))["output"].shape == (1,)
        assert calls == [1, 3] + [1] * len(bad)
        assert len(iris.checked_kinds) == 1

    asyncio.run(go())
    # strings and tables are checked by their values too: never remembered
    assert not app.server.models[("multi", "1.0")].kinds_decide
    assert not app.server.models[("table", "1")].kinds_decide
