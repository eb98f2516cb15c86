"""The served model: admission, the signature check before queueing, zero-row answers."""

from __future__ import annotations

import asyncio
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import tiffin
from tiffin.serve.config import ServeConfig
from tiffin.serve.metrics import Metrics
from tiffin.serve.model import Model

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
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Model:
    monkeypatch.setenv("TIFFIN_ENV_CAPTURE", "off")
    (tmp_path / "widen.py").write_text(SOURCE)
    pkg = tiffin.pack(
        f"{tmp_path / 'widen.py'}:Widen", tmp_path / "p", name="widen", version="1",
        example=np.ones((2, 3)), dynamic_axes={"input": [1], "output": [1]},
    )  # fmt: skip
    return Model(tiffin.load(pkg.path), ServeConfig(), ThreadPoolExecutor(1), Metrics())


def test_zero_rows_are_answered_from_the_signature_with_free_trailing_axes(
    served: Model,
) -> None:
    assert served.signature.outputs[0].shape == (-1, -1)
    answer = asyncio.run(served.infer({"input": np.empty((0, 5))}))
    assert answer["output"].shape == (0, 0) and answer["output"].dtype == np.float64


def test_rows_of_another_width_pass_a_dynamic_axis(served: Model) -> None:
    answer = asyncio.run(served.infer({"input": np.ones((1, 5))}))
    assert answer["output"].shape == (1, 10)


def test_a_wrong_dtype_is_refused_before_queueing(served: Model) -> None:
    with pytest.raises(tiffin.SignatureError, match="input"):
        asyncio.run(served.infer({"input": np.array([["a", "b"]])}))


def test_config_refuses_a_budget_below_the_body_limit() -> None:
    with pytest.raises(tiffin.UsageError, match="max-buffered-bytes"):
        ServeConfig(max_body=10 << 20, max_buffered_bytes=1 << 20)
