"""tritonclient (sync and asyncio) with every V2 datatype, string labels and string columns.

Models not used elsewhere: a custom model taking one input of each datatype, a random
forest with string class labels (a BYTES output), a DataFrame pipeline with string,
integer, float32 and boolean columns, and an input-broadcasting model that must never
be batched with others. Every answer is compared with the in-process prediction.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient

import tiffin
from tests.serve.conftest import Served, start, stop

EVERY_SRC = textwrap.dedent(
    """
    import numpy as np


    class Every:
        def load(self, context):
            pass

        def predict(self, inputs):
            out = {}
            for name, v in inputs.items():
                if v.dtype == object:
                    out[name] = np.array([s[::-1] for s in v], dtype=object)
                elif v.dtype == bool:
                    out[name] = ~v
                else:
                    out[name] = v
            f = inputs["f64"]
            out["pair"] = np.stack([f.sum(axis=1), f.sum(axis=1) * 2], axis=1)
            return out


    class When:
        def load(self, context):
            pass

        def predict(self, frame):
            return frame["t"].dt.year.to_numpy() * 10 + frame["x"].to_numpy()


    class Add:
        def load(self, context):
            pass

        def predict(self, inputs):
            return inputs["x"][:, 0] + inputs["y"][:, 0]
    """
)
DATATYPES = {
    "f16": ("FP16", np.float16), "f32": ("FP32", np.float32), "f64": ("FP64", np.float64),
    "i8": ("INT8", np.int8), "i16": ("INT16", np.int16), "i32": ("INT32", np.int32),
    "i64": ("INT64", np.int64), "u8": ("UINT8", np.uint8), "u16": ("UINT16", np.uint16),
    "u32": ("UINT32", np.uint32), "u64": ("UINT64", np.uint64), "b": ("BOOL", np.bool_),
    "s": ("BYTES", object),
}  # fmt: skip


def every_input(rows: int = 3) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, (_, dtype) in DATATYPES.items():
        if dtype is object:
            out[name] = np.array(["héllo", "", "x\x00y"][:rows] * (rows // 3 + 1), dtype=object)[:rows]  # fmt: skip
        elif dtype is np.bool_:
            out[name] = np.array([True, False, True] * rows)[:rows]
        elif name in ("f16", "f32", "f64"):
            out[name] = np.arange(rows * 2, dtype=dtype).reshape(rows, 2) / 4
        else:
            info = np.iinfo(dtype)
            out[name] = np.array([info.min, 0, info.max] * rows, dtype=dtype)[:rows]
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    root = tmp_path_factory.mktemp("dtypes")
    src = root / "every.py"
    src.write_text(EVERY_SRC)
    rng = np.random.default_rng(0)
    every = tiffin.pack(f"{src}:Every", root / "every", name="every", version="1", example=every_input()).path  # fmt: skip
    add = tiffin.pack(f"{src}:Add", root / "add", name="add", version="1",
                      example={"x": np.zeros((2, 1)), "y": np.zeros((2, 1))}).path  # fmt: skip
    X = rng.normal(size=(60, 5))
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, np.where(X[:, 0] > 0, "cat", "dog"))  # fmt: skip
    labels = tiffin.pack(forest, root / "labels", name="labels", version="1", example=X[:3]).path
    frame = pd.DataFrame({
        "city": rng.choice(["paris", "lyon", "nice"], 40), "n": rng.integers(0, 9, 40),
        "f": rng.normal(size=40).astype(np.float32), "b": rng.integers(0, 2, 40).astype(bool),
    })  # fmt: skip
    encode = ColumnTransformer(
        [("c", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough"
    )
    pipe = make_pipeline(encode, Ridge()).fit(frame, rng.normal(size=40))
    table = tiffin.pack(pipe, root / "table", name="table", version="1", example=frame.head(3)).path  # fmt: skip
    dated = pd.DataFrame({"t": pd.to_datetime(["2020-01-01", "2021-06-01"]), "x": [1, 2]})
    when = tiffin.pack(f"{src}:When", root / "when", name="when", version="1", example=dated).path
    return {"every": every, "add": add, "labels": labels, "table": table, "when": when}


@pytest.fixture(scope="module")
def served(models: dict[str, Path]) -> Iterator[Served]:
    s = start([str(p) for p in models.values()])
    yield s
    stop(s)


@pytest.fixture
def client(served: Served) -> Iterator[Any]:
    c = httpclient.InferenceServerClient(url=f"127.0.0.1:{served.port}")
    yield c
    c.close()


def _infer_input(name: str, arr: np.ndarray, datatype: str, binary: bool) -> Any:
    inp = httpclient.InferInput(name, list(arr.shape), datatype)
    if datatype == "BYTES":
        arr = np.array([v.encode() for v in arr.ravel()], dtype=object).reshape(arr.shape)
    inp.set_data_from_numpy(arr, binary_data=binary)
    return inp


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_every_datatype_round_trips(client: Any, binary_in: bool, binary_out: bool) -> None:
    data = every_input()
    inputs = [_infer_input(k, v, DATATYPES[k][0], binary_in) for k, v in data.items()]
    names = [*data, "pair"]
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary_out) for n in names]
    result = client.infer("every", inputs, outputs=outputs)
    for name, arr in data.items():
        got = result.as_numpy(name)
        if name == "s":
            texts = [v.decode() if isinstance(v, bytes) else v for v in got.tolist()]
            assert texts == [v[::-1] for v in arr]
        elif name == "b":
            assert got.dtype == np.bool_ and got.tolist() == (~arr).tolist()
        else:
            assert got.dtype == arr.dtype, name
            np.testing.assert_array_equal(got, arr)
    np.testing.assert_array_equal(result.as_numpy("pair"), [[0.25, 0.5], [1.25, 2.5], [2.25, 4.5]])  # fmt: skip


def test_per_output_binary_flags_and_subsets(client: Any) -> None:
    data = every_input()
    inputs = [_infer_input(k, v, DATATYPES[k][0], i % 2 == 0) for i, (k, v) in enumerate(data.items())]  # fmt: skip
    wanted = [httpclient.InferRequestedOutput("s", binary_data=True),
              httpclient.InferRequestedOutput("u64", binary_data=False),
              httpclient.InferRequestedOutput("pair", binary_data=True)]  # fmt: skip
    result = client.infer("every", inputs, outputs=wanted)
    response = result.get_response()["outputs"]
    assert [o["name"] for o in response] == ["s", "u64", "pair"]
    assert [("binary_data_size" in o.get("parameters", {})) for o in response] == [
        True,
        False,
        True,
    ]
    assert result.as_numpy("u64").tolist() == [0, 0, 2**64 - 1]
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="unknown output 'nope'"):
        client.infer("every", inputs, outputs=[httpclient.InferRequestedOutput("nope")])


def test_string_labels_are_a_bytes_output(client: Any, models: dict[str, Path]) -> None:
    x = np.random.default_rng(3).normal(size=(6, 5))
    want = tiffin.load(models["labels"]).predict(x).tolist()
    meta = client.get_model_metadata("labels")
    assert meta["outputs"] == [{"name": "output", "datatype": "BYTES", "shape": [-1]}]
    for binary in (True, False):
        out = [httpclient.InferRequestedOutput("output", binary_data=binary)]
        got = client.infer("labels", [_infer_input("input", x, "FP64", binary)], outputs=out)
        texts = [v.decode() if isinstance(v, bytes) else v for v in got.as_numpy("output").tolist()]
        assert texts == want


def test_a_dataframe_model_takes_one_tensor_per_column(client: Any, models: dict[str, Path]) -> None:  # fmt: skip
    import pandas as pd

    frame = pd.DataFrame({"city": ["paris", "zzz"], "n": np.array([1, 8]),
                          "f": np.array([0.5, -1.0], np.float32), "b": [True, False]})  # fmt: skip
    want = tiffin.load(models["table"]).predict(frame)
    meta = client.get_model_metadata("table")
    types = {"city": "BYTES", "n": "INT64", "f": "FP32", "b": "BOOL"}
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == types
    for binary in (True, False):
        for shape in ([2], [2, 1]):  # V2 clients often send columns as [n, 1]
            inputs = [_infer_input(c, frame[c].to_numpy().reshape(shape), types[c], binary) for c in types]  # fmt: skip
            np.testing.assert_allclose(client.infer("table", inputs).as_numpy("output"), want)


def test_many_concurrent_async_clients_get_their_own_rows(served: Served, models: dict[str, Path]) -> None:  # fmt: skip
    """64 asyncio clients, 1- and 10-row requests, four models, one of them never
    batchable with others (inputs of different batch sizes): no answer holds another
    request's rows, and invalid requests fail alone."""
    labels = tiffin.load(models["labels"])
    rng = np.random.default_rng(11)

    def add_case(i: int) -> tuple[Any, list[float]]:
        wide = (i // 4) % 2 == 1  # alternating, so merged x and y rows could balance
        x = rng.normal(size=(2 if wide else 1, 1))
        y = rng.normal(size=(1 if wide else 2, 1))
        return (x, y), (x[:, 0] + y[:, 0]).tolist()

    async def one(client: Any, i: int) -> bool:
        rows = 1 if i % 3 else 10
        if i % 4 == 0:
            x = rng.normal(size=(rows, 5))
            got = await client.infer("labels", [_infer_input("input", x, "FP64", i % 8 == 0)])
            texts = [v.decode() for v in got.as_numpy("output").tolist()]
            return texts == labels.predict(x).tolist()
        if i % 4 == 1:
            (x, y), want = add_case(i)
            ins = [_infer_input("x", x, "FP64", True), _infer_input("y", y, "FP64", False)]
            return bool((await client.infer("add", ins)).as_numpy("output").tolist() == want)
        if i % 4 == 2:
            data = every_input(rows)
            data["i64"] = np.arange(rows, dtype=np.int64) + i * 100
            ins = [_infer_input(k, v, DATATYPES[k][0], True) for k, v in data.items()]
            got = await client.infer("every", ins)
            return bool(got.as_numpy("i64").tolist() == data["i64"].tolist())
        bad = [_infer_input("input", rng.normal(size=(rows, 3)), "FP64", True)]  # wrong width
        try:
            await client.infer("labels", bad)
        except Exception as exc:  # tritonclient raises its own exception type
            return "expects shape" in str(exc)
        return False

    async def main() -> list[bool]:
        clients = [aioclient.InferenceServerClient(f"127.0.0.1:{served.port}") for _ in range(64)]
        try:

            async def worker(k: int) -> list[bool]:
                return [await one(clients[k], k * 100 + j) for j in range(8)]

            results = await asyncio.gather(*(worker(k) for k in range(64)))
        finally:
            for c in clients:
                await c.close()
        return [r for rs in results for r in rs]

    before = _scrape(served)
    results = asyncio.run(main())
    assert len(results) == 512 and all(results)
    after = _scrape(served)

    def sent(name: str, model: str, **labels: str) -> float:
        return after.get((name, model, *sorted(labels.items())), 0.0) - before.get(
            (name, model, *sorted(labels.items())), 0.0
        )

    # 128 requests of each kind; the metrics add up to what was sent
    assert sent("tiffin_requests_total", "labels", code="200", endpoint="infer") == 128
    assert sent("tiffin_requests_total", "labels", code="400", endpoint="infer") == 128
    assert sent("tiffin_requests_total", "add", code="200", endpoint="infer") == 128
    assert sent("tiffin_requests_total", "every", code="200", endpoint="infer") == 128
    # the invalid requests never reached a batch; every batch kept max_batch_size (64)
    assert sent("tiffin_batch_requests_sum", "labels") == 128
    for model in ("labels", "every"):
        assert sent("tiffin_batch_rows_bucket", model, le="64.0") == sent("tiffin_batch_rows_count", model)  # fmt: skip
    # the broadcasting requests ran one per call
    assert sent("tiffin_batch_requests_sum", "add") == sent("tiffin_batch_requests_count", "add") == 128  # fmt: skip


def _scrape(served: Served) -> dict[tuple[str, ...], float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{served.url}/metrics").text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k not in ("model", "version")}
            key = (sample.name, sample.labels.get("model", ""), *sorted(labels.items()))
            out[key] = sample.value
    return out


def test_triton_model_config(client: Any, served: Served) -> None:
    """get_model_config (and perf_analyzer) read Triton's config endpoint: once a 404."""
    config = client.get_model_config("every")
    assert config["max_batch_size"] == 64 and "dynamic_batching" in config
    dims = {t["name"]: (t["data_type"], t["dims"]) for t in config["input"]}
    assert dims["f16"] == ("TYPE_FP16", [2]) and dims["s"] == ("TYPE_STRING", [])
    assert client.get_model_config("labels", "1")["output"] == [
        {"name": "output", "data_type": "TYPE_STRING", "dims": []}
    ]
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="not served"):
        client.get_model_config("labels", "9")


def test_a_datetime_column_takes_iso_text(client: Any, served: Served) -> None:
    """V2 has no datetime type (the metadata says BYTES): a datetime input was refused
    whatever a client sent ("expects datetimes, got str")."""
    import httpx

    meta = client.get_model_metadata("when")
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {"t": "BYTES", "x": "INT64"}
    t = np.array([b"2020-01-01", b"2023-05-06T07:08:09"], dtype=object)
    x = np.array([1, 2], np.int64)
    for binary in (True, False):
        inputs = [_infer_input("t", t.astype(str).astype(object), "BYTES", binary),
                  _infer_input("x", x, "INT64", binary)]  # fmt: skip
        assert client.infer("when", inputs).as_numpy("output").tolist() == [20201, 20232]
    for bad, message in (("soon", "ISO 8601"), ("2020-01-01T00:00:00Z", "without an offset")):
        body = {"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES", "data": [bad]},
                           {"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]}  # fmt: skip
        r = httpx.post(f"{served.url}/v2/models/when/infer", json=body)
        assert r.status_code == 400 and message in r.json()["error"]
