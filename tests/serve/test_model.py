"""The served model: admission, the signature check before queueing, zero-row answers."""

from __future__ import annotations

import asyncio
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import tiffin
from tiffin.schema.tensorspec import TensorSpec
from tiffin.serve.config import ServeConfig
from tiffin.serve.errors import BadRequest
from tiffin.serve.metrics import Metrics
from tiffin.serve.model import ServedModel, parse_datetimes

SOURCE = textwrap.dedent(
    """
    import numpy as np

    class Widen:
        calls = 0

        def load(self, context):
            pass

        def predict(self, x):
            Widen.calls += 1
            return np.concatenate([x, x], axis=1)
    """
)


@pytest.fixture()
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServedModel:
    monkeypatch.setenv("TIFFIN_ENV_CAPTURE", "off")
    (tmp_path / "widen.py").write_text(SOURCE)
    pkg = tiffin.pack(
        f"{tmp_path / 'widen.py'}:Widen", tmp_path / "p", name="widen", version="1",
        example=np.ones((2, 3)), dynamic_axes={"input": [1], "output": [1]},
    )  # fmt: skip
    return ServedModel(tiffin.load(pkg.path), ServeConfig(), ThreadPoolExecutor(1), Metrics())


def test_zero_rows_are_answered_from_the_signature_with_free_trailing_axes(
    served: ServedModel,
) -> None:
    assert served.signature.outputs[0].shape == (-1, -1)
    answer = asyncio.run(served.infer({"input": np.empty((0, 5))}))
    assert answer["output"].shape == (0, 0) and answer["output"].dtype == np.float64


def test_rows_of_another_width_pass_a_dynamic_axis(served: ServedModel) -> None:
    answer = asyncio.run(served.infer({"input": np.ones((1, 5))}))
    assert answer["output"].shape == (1, 10)


def test_a_wrong_dtype_is_refused_before_queueing(served: ServedModel) -> None:
    with pytest.raises(tiffin.SignatureError, match="input"):
        asyncio.run(served.infer({"input": np.array([["a", "b"]])}))


def test_config_refuses_a_budget_below_the_body_limit() -> None:
    with pytest.raises(tiffin.UsageError, match="max-buffered-bytes"):
        ServeConfig(max_body=10 << 20, max_buffered_bytes=1 << 20)


def test_datetime_inputs_are_parsed_from_text_and_offsets_refused() -> None:
    """Neither wire protocol has a datetime type: the model parses the text both send."""
    specs = (TensorSpec("when", "datetime64[ns]", (-1,)), TensorSpec("n", "int64", (-1,)))
    text = np.array([b"2024-02-29T12:00:00", "2024-03-01"], dtype=object)
    n = np.array([1, 2])
    parsed = parse_datetimes({"when": text, "n": n}, specs)
    assert parsed["when"].dtype == np.dtype("datetime64[ns]")
    assert parsed["when"][1] == np.datetime64("2024-03-01T00:00:00")
    assert parsed["n"] is n  # other inputs untouched
    with pytest.raises(BadRequest, match="without an offset"):
        parse_datetimes({"when": np.array(["2024-03-01T00:00:00Z"], dtype=object)}, specs)
    with pytest.raises(BadRequest, match="expects ISO 8601"):
        parse_datetimes({"when": np.array(["soon"], dtype=object)}, specs)
