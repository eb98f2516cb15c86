"""Field checks shared by the validators of native model state (trees, neighbour trees).

Their C code indexes these arrays and integers without bounds checks, so each field is
checked for its exact type, dtype, dimensions and range before any of it is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsafeArtifactError

C_INT_MAX = 2**31 - 1


def refuse(where: str, why: str) -> UnsafeArtifactError:
    return UnsafeArtifactError(
        f"{where}: {why}; the model's native code would read outside its arrays",
        where=where,
        fix="do not load this file; pack the model again from its training code",
    )


def int_field(value: Any, where: str, low: int = 0, high: int = C_INT_MAX) -> int:
    """A plain or NumPy integer (never a bool) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise refuse(where, f"expected an integer, got {type(value).__name__}")
    if not low <= int(value) <= high:
        raise refuse(where, f"{int(value)} is outside [{low}, {high}]")
    return int(value)


def array_field(
    value: Any, where: str, dtype: Any, ndim: int, *, contiguous: bool = False
) -> np.ndarray:
    """Exactly an ndarray of ``dtype`` with ``ndim`` dimensions (C-contiguous if asked)."""
    if type(value) is not np.ndarray:
        raise refuse(where, f"expected a NumPy array, got {type(value).__name__}")
    if value.dtype != dtype:
        raise refuse(where, f"dtype {value.dtype}, expected {np.dtype(dtype)}")
    if value.ndim != ndim:
        raise refuse(where, f"{value.ndim} dimensions, expected {ndim}")
    if contiguous and not value.flags.c_contiguous:
        raise refuse(where, "not C-contiguous")
    return value
