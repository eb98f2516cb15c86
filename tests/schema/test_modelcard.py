"""The generated model card: a table cell never breaks the table."""

from __future__ import annotations

from tiffin.schema.modelcard import render
from tiffin.schema.signature import Signature, TensorSpec


def _rows(card: str, header: str) -> list[str]:
    lines = card.splitlines()
    start = lines.index(header)
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_cells_with_pipes_newlines_and_backticks_stay_in_their_cells() -> None:
    sig = Signature(
        inputs=(TensorSpec("a|b", "float64", (-1,)), TensorSpec("x`y", "int64", (-1,), True)),
        input_kind="dataframe",
    )
    card = render("m", "1", "sklearn", sig, {"metrics": {"auc|roc": "0.9\n| x |"}}, [])
    for row in _rows(card, "| name | dtype | shape | nullable |") + _rows(
        card, "| metric | value |"
    ):
        cells = row.replace("\\|", "").strip("|").split("|")
        assert len(cells) in (2, 4), row
    assert "| `a\\|b` | float64 | [any] | NaN |" in card  # floats take NaN for missing
    assert "| ``x`y`` | int64 | [any] | yes |" in card
