"""The bounded UBJSON reader, on an XGBoost model file edited where XGBoost's own reader trusts it."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

import tiffin
from tiffin.security import ubjson
from tiffin.security.xgboost_check import check_model_bytes


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


def test_ubjson_reader_bounds(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    """Lengths and counts XGBoost's reader would trust (a copy past the end, an array
    sized by a forged count) are refused by tiffin's own reader, which never reads past
    the bytes it has."""
    X, y = data
    clf = xgb.XGBClassifier(n_estimators=2, max_depth=2).fit(X, y)
    good = bytes(clf.get_booster().save_raw(raw_format="ubj"))
    check_model_bytes(good, "good.ubj")
    key = good.index(b"learner") - 9  # the first key's 'L' and int64 length
    typed = good.index(b"[$l#L") + 5  # a typed int32 array's int64 count
    big = struct.pack(">q", 1 << 60)
    cases = {
        "a key's length past the end": (
            good[: key + 1] + big + good[key + 9 :],
            "runs past the end",
        ),
        "a negative key length": (
            good[: key + 1] + struct.pack(">q", -5) + good[key + 9 :],
            "runs past the end",
        ),
        "a typed count past the end": (good[:typed] + big + good[typed + 8 :], "runs past the end"),
        "a length marker that is not L": (good[:key] + b"l" + good[key + 1 :], "not marked 'L'"),
        "cut short": (good[: len(good) // 2], "past the end|cut short"),
        "trailing bytes": (good + b"Z", "follow the document"),
        "deep nesting": (
            b"{L" + struct.pack(">q", 1) + b"a" + b"[" * 100 + b"]" * 100 + b"}",
            "nests deeper",
        ),
        "a repeated key": (
            b"{L" + struct.pack(">q", 1) + b"aZL" + struct.pack(">q", 1) + b"aZ}",
            "twice",
        ),
        "float64": (b"{L" + struct.pack(">q", 1) + b"aD" + bytes(8) + b"}", "unsupported marker"),
    }
    for label, (blob, message) in cases.items():
        with pytest.raises(tiffin.FlavorError, match=message):
            check_model_bytes(blob, label)
        with pytest.raises(ubjson.Malformed, match=message):
            ubjson.read(blob)
