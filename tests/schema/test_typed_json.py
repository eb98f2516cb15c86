"""The typed example codec (examples/): dtypes, gaps and non-finite values survive."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tiffin.schema import typed_json as examples
from tiffin.schema.signature import Signature


def test_nullable_columns_round_trip_with_their_dtypes() -> None:
    frame = pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "ok": pd.array([True, None, False], dtype="boolean"),
            "full": pd.array([1, 2, 3], dtype="Int64"),
            "x": [0.5, np.nan, np.inf],
            "s": ["a", None, "c"],
        }
    )
    back = examples.loads(examples.dumps(frame))
    assert str(back["n"].dtype) == "Int64" and back["n"].isna().tolist() == [False, True, False]
    assert str(back["ok"].dtype) == "boolean" and back["ok"].tolist()[::2] == [True, False]
    assert back["full"].tolist() == [1, 2, 3]
    assert np.isnan(back["x"][1]) and np.isinf(back["x"][2])
    # The recorded example must pass its own signature (verify replays it).
    Signature.infer(frame).validate(back)
    assert examples.compare(frame["n"].fillna(-1), back["n"].fillna(-1)) is None


def test_dataframe_column_order_and_dtypes_survive() -> None:
    """Models fitted on a frame check its column order; sorted JSON keys must not reorder it."""
    frame = pd.DataFrame(
        {
            "b": [1.5, 2.5],
            "a": np.array([1, 2], dtype=np.int32),
            "Z": ["x", "y"],
            "c": pd.Categorical(["lo", "hi"], categories=["lo", "hi", "mid"]),
            "m": pd.array([1, None], dtype="Int64"),
        }
    )
    back = examples.loads(examples.dumps(frame))
    assert list(back.columns) == ["b", "a", "Z", "c", "m"]
    assert {c: str(t) for c, t in back.dtypes.items()} == {
        c: str(t) for c, t in frame.dtypes.items()
    }
    assert list(back["c"].cat.categories) == ["lo", "hi", "mid"]
    pd.testing.assert_frame_equal(back, frame)
