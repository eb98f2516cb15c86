"""The field checks every native-state validator builds on."""

from __future__ import annotations

import numpy as np
import pytest

import tiffin
from tiffin.security.native_fields import C_INT_MAX, array_field, int_field


@pytest.mark.parametrize("value", [True, 1.0, "1", None, np.float64(1)])
def test_only_integers_are_integers(value: object) -> None:
    with pytest.raises(tiffin.UnsafeArtifactError, match="expected an integer"):
        int_field(value, "tree.n_nodes")


def test_integers_outside_their_range_are_refused() -> None:
    assert int_field(np.int64(5), "n", 0, 5) == 5
    for value in (-1, C_INT_MAX + 1):
        with pytest.raises(tiffin.UnsafeArtifactError, match="outside") as info:
            int_field(value, "tree.n_nodes")
        assert info.value.where == "tree.n_nodes"


def test_arrays_must_be_exactly_what_the_c_code_reads() -> None:
    good = np.zeros((2, 3))
    assert array_field(good, "x", np.float64, 2, contiguous=True) is good
    cases = [
        (good.tolist(), "expected a NumPy array"),
        (good.astype(np.float32), "dtype float32"),
        (good.ravel(), "1 dimensions"),
        (np.zeros((2, 6))[:, ::2], "not C-contiguous"),
    ]
    for value, message in cases:
        with pytest.raises(tiffin.UnsafeArtifactError, match=message):
            array_field(value, "x", np.float64, 2, contiguous=True)
    subclass = np.zeros(3).view(np.matrix)
    with pytest.raises(tiffin.UnsafeArtifactError, match="expected a NumPy array"):
        array_field(subclass, "x", np.float64, 2)
