"""The typed example codec (examples/): dtypes, gaps and non-finite values survive."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tiffin import examples
from tiffin.signature import Signature


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
