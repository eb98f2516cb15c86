"""The CatBoost JSON checker on its own: parsing rules and the fault's JSON path."""

from __future__ import annotations

import pytest

import tiffin
from tiffin.security.catboost_check import check_model_json


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "malformed CatBoost model JSON"),
        (b"[1, 2]", r"\$"),  # the document must be an object
        (b'{"a": 1, "a": 2}', "malformed CatBoost model JSON"),  # a repeated key
        (b"{}", "malformed CatBoost model JSON"),  # no model in it
        (b'{"oblivious_trees": NaN}', "malformed CatBoost model JSON"),
    ],
)
def test_broken_documents_are_refused_with_where(data: bytes, message: str) -> None:
    with pytest.raises(tiffin.FlavorError, match=message) as info:
        check_model_json(data, "artifacts/model.json")
    assert info.value.where == "artifacts/model.json"
    assert "save_model" in (info.value.fix or "")
