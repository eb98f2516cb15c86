"""Conformance with NVIDIA's own V2 client, tritonclient[http], against `tiffin serve`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.serve.conftest import Served


@pytest.fixture
def client(server: Served) -> Any:
    c = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    yield c
    c.close()


def test_health_and_metadata(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "2")
    meta = client.get_server_metadata()
    assert meta["name"] == "tiffin" and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("multi")
    assert model["versions"] == ["1.0"]
    assert {i["name"]: i["datatype"] for i in model["inputs"]} == {
        "x": "FP32",
        "n": "INT64",
        "s": "BYTES",
    }
    assert client.get_model_metadata("iris", "1")["inputs"][0] == {
        "name": "input",
        "datatype": "FP64",
        "shape": [-1, 4],
    }


def _inputs(binary: bool) -> list[Any]:
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    n = np.array([7, 8], np.int64)
    s = np.array([b"hello", "wörld".encode()], dtype=object)
    ins = [httpclient.InferInput("x", [2, 3], "FP32"), httpclient.InferInput("n", [2], "INT64"),
           httpclient.InferInput("s", [2], "BYTES")]  # fmt: skip
    for inp, arr in zip(ins, (x, n, s)):
        inp.set_data_from_numpy(arr, binary_data=binary)
    return ins


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_infer_fp32_int64_bytes(client: Any, binary_in: bool, binary_out: bool) -> None:
    outputs = [
        httpclient.InferRequestedOutput(n, binary_data=binary_out) for n in ("sum", "n2", "upper")
    ]
    result = client.infer("multi", _inputs(binary_in), outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("sum"), np.array([6, 15], np.float32))
    assert result.as_numpy("sum").dtype == np.float32
    np.testing.assert_array_equal(result.as_numpy("n2"), np.array([14, 16], np.int64))
    upper = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("upper").tolist()]
    assert upper == ["HELLO", "WÖRLD"]


def test_infer_without_requested_outputs(client: Any) -> None:
    result = client.infer("multi", _inputs(True))
    assert sorted(o["name"] for o in result.get_response()["outputs"]) == ["n2", "sum", "upper"]
    np.testing.assert_array_equal(result.as_numpy("n2"), np.array([14, 16]))


def test_one_requested_output_and_versions(client: Any) -> None:
    out = [httpclient.InferRequestedOutput("n2", binary_data=True)]
    result = client.infer("multi", _inputs(False), outputs=out)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["n2"]
    x = np.array([[5.1, 3.5, 1.4, 0.2]])
    inp = httpclient.InferInput("input", [1, 4], "FP64")
    inp.set_data_from_numpy(x)
    v1 = client.infer("iris", [inp], model_version="1").as_numpy("output")
    v2 = client.infer("iris", [inp], model_version="2").as_numpy("output")
    latest = client.infer("iris", [inp]).as_numpy("output")
    assert v1.tolist() == [0] and v2.shape == (1, 3)
    np.testing.assert_array_equal(latest, v2)


def test_errors_through_the_client(client: Any) -> None:
    from tritonclient.utils import InferenceServerException

    inp = httpclient.InferInput("input", [1, 3], "FP64")
    inp.set_data_from_numpy(np.zeros((1, 3)))
    with pytest.raises(InferenceServerException, match="expects shape"):
        client.infer("iris", [inp])
    with pytest.raises(InferenceServerException, match="not served"):
        client.get_model_metadata("nope")


def test_the_asyncio_client_concurrently(server: Served) -> None:
    """tritonclient.http.aio (aiohttp underneath): 40 requests in flight at once, JSON
    and binary mixed (merged into batches where they can be), and every answer must be
    the one for its own request."""
    import asyncio

    import tritonclient.http.aio as aioclient

    async def main() -> list[np.ndarray]:
        client = aioclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        try:
            assert await client.is_server_ready()
            assert (await client.get_model_metadata("multi"))["name"] == "multi"

            async def one(i: int) -> np.ndarray:
                x = aioclient.InferInput("x", [1, 3], "FP32")
                x.set_data_from_numpy(np.full((1, 3), i, np.float32), binary_data=i % 2 == 0)
                n = aioclient.InferInput("n", [1], "INT64")
                n.set_data_from_numpy(np.array([i], np.int64))
                s = aioclient.InferInput("s", [1], "BYTES")
                s.set_data_from_numpy(np.array([f"r{i}".encode()], dtype=object))
                result = await client.infer("multi", [x, n, s])
                return np.concatenate([result.as_numpy("sum"), result.as_numpy("n2")])

            return await asyncio.gather(*(one(i) for i in range(40)))
        finally:
            await client.close()

    answers = asyncio.run(main())
    assert [a.tolist() for a in answers] == [[3.0 * i, 2.0 * i] for i in range(40)]
