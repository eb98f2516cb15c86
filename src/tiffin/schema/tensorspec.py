"""One named input or output of a signature, and the dtype helpers every layer shares.

Kept apart from :mod:`tiffin.schema.signature` (the signature as a whole: inference and
export) and :mod:`tiffin.schema.enforce` (checking inputs against it) so both can use it
without importing each other.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SignatureError

# Open Inference Protocol datatypes for each signature dtype.
V2_DATATYPES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "str": "BYTES",
    "datetime64[ns]": "BYTES",
}


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: dtype, shape (-1 = dynamic) and nullability.

    ``nullable`` says whether a missing value (None, NaN, ``pd.NA``) is accepted in a
    column that is not float; a float input always accepts NaN, its missing value.
    ``nullable_reason`` records how inference decided (see docs/signature.md); it is
    documentation, so it takes no part in comparing specs.
    """

    name: str
    dtype: str
    shape: tuple[int, ...] = (-1,)
    nullable: bool = False
    nullable_reason: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.nullable:
            data["nullable"] = True
        if self.nullable_reason:
            data["nullable_reason"] = self.nullable_reason
        return data

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> TensorSpec:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise SignatureError("each spec needs a string 'name'", where=where)
        dtype = raw.get("dtype")
        if dtype not in V2_DATATYPES:
            raise SignatureError(
                f"unknown dtype {dtype!r} for {raw['name']!r}",
                where=where,
                fix=f"use one of {', '.join(V2_DATATYPES)}",
            )
        shape = raw.get("shape", [-1])
        if not isinstance(shape, list) or not all(type(d) is int and d >= -1 for d in shape):
            raise SignatureError(f"bad shape {shape!r} for {raw['name']!r}", where=where)
        nullable = raw.get("nullable", False)
        if not isinstance(nullable, bool):
            raise SignatureError(
                f"'nullable' of {raw['name']!r} must be true or false, not {nullable!r}",
                where=where,
            )
        reason = raw.get("nullable_reason", "")
        if not isinstance(reason, str):
            raise SignatureError(
                f"'nullable_reason' of {raw['name']!r} must be a string", where=where
            )
        return cls(raw["name"], dtype, tuple(shape), nullable, reason)

    @property
    def v2_datatype(self) -> str:
        return V2_DATATYPES[self.dtype]


def dtype_name(dtype: np.dtype[Any]) -> str:
    """The signature dtype name of a numpy dtype."""
    if dtype.kind in "OUSTt":
        return "str"
    if dtype.kind == "M":
        return "datetime64[ns]"
    name = dtype.name
    if name not in V2_DATATYPES:
        raise SignatureError(f"dtype {dtype} is not supported in a signature")
    return name


def _is_frame(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.DataFrame)


def _is_series(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.Series)


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise SignatureError(
            "this model takes a DataFrame but pandas is not installed",
            fix="pip install pandas",
        ) from None
    return pd


def _to_array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        return np.asarray(value.detach().cpu().numpy())
    if _is_series(value) or _is_frame(value):
        return np.asarray(value.to_numpy())
    return np.asarray(value)


def masked_dtype(dtype: np.dtype[Any]) -> str:
    """The pandas nullable dtype for a NumPy one: int64 -> Int64, uint8 -> UInt8, bool -> boolean."""
    if dtype.kind == "b":
        return "boolean"
    bits = dtype.itemsize * 8
    return {"i": f"Int{bits}", "u": f"UInt{bits}", "f": f"Float{bits}"}[dtype.kind]
