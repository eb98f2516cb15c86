"""The skops judge on hand-written schema nodes: what each loader may name."""

from __future__ import annotations

from typing import Any

import pytest

import tiffin
from tiffin.security.skops_audit import judge


def _node(loader: str, name: str, **content: Any) -> dict[str, Any]:
    module, _, cls = name.rpartition(".")
    return {"__loader__": loader, "__module__": module, "__class__": cls, "__id__": 1, **content}


def test_a_listed_estimator_passes_and_its_names_are_returned() -> None:
    node = _node("ObjectNode", "sklearn.linear_model._logistic.LogisticRegression", content={})
    assert "sklearn.linear_model._logistic.LogisticRegression" in judge(node)


@pytest.mark.parametrize(
    ("loader", "name"),
    [
        ("ObjectNode", "os._wrap_close"),  # not on the list, whatever it is
        ("ObjectNode", "sklearn.utils._testing.MinimalClassifier"),  # a prefix is no trust
        ("ConstructorFromReduceNode", "numpy.memmap"),  # called with file data: constructors only
        ("FunctionNode", "numpy.save"),  # a function that writes files
        ("MethodNode", "sklearn.linear_model._logistic.LogisticRegression"),
        ("NoSuchNode", "builtins.dict"),  # an unknown loader
    ],
)
def test_names_outside_what_their_loader_may_name_are_refused(loader: str, name: str) -> None:
    with pytest.raises(tiffin.UnsafeArtifactError, match="not on tiffin's closed list|loader"):
        judge(_node(loader, name, content={}))


def test_a_declared_type_passes_and_nothing_is_imported() -> None:
    import sys

    name = "tiffin_never_imported_pkg.Model"
    assert name in judge(_node("ObjectNode", name, content={}), declared=[name])
    assert "tiffin_never_imported_pkg" not in sys.modules


def test_a_node_without_string_names_is_refused() -> None:
    with pytest.raises(tiffin.UnsafeArtifactError, match="without a string loader"):
        judge({"__loader__": "ObjectNode", "__module__": 3, "__class__": "X"})
