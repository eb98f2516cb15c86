"""NumPy's own reconstruction paths, kept memory-safe for the allow-list unpickler.

NumPy is allowed because arrays are what models are made of, but three of its pickle
entry points trust their arguments with raw memory:

- ``numpy.ndarray(shape, "O", buffer=b"AAAA...")`` makes an object array whose
  pointers are the buffer's bytes: touching an element dereferences them (a
  segfault, and with a pointer into memory the pickle also controls, code). Pickles
  never call the array class directly (arrays go through ``_reconstruct``), so calling
  it, or an array subclass, by REDUCE, NEWOBJ, OBJ, INST or ``copyreg`` is refused.
- ``dtype.__setstate__`` takes the dtype's flags, item size and fields from the
  stream as given: an object dtype with its flags zeroed lets raw bytes become
  pointers, an item size smaller than the fields reads past the buffer. After BUILD
  the dtype must equal one NumPy builds itself from the same public description,
  flags and size included (NumPy's constructor checks overlaps and bounds).
- A dtype built after something already refers to it would change that array's
  meaning under it, so BUILD on a dtype is allowed once, while only the stack and
  the memo hold it.
- ``MT19937``'s state takes its read position as given, and the generator indexes
  its 624-word key with it: ``pos=10**8`` reads far outside it (a segfault on the
  first draw, before that heap memory in the "random" numbers). After BUILD on a
  bit generator, ``RandomState`` or ``Generator`` the position must be in range.
"""

from __future__ import annotations

import copyreg
import sys
from collections.abc import Iterable
from typing import Any

from ..errors import UnsafeArtifactError


def _np() -> Any:
    import numpy as np

    return np


def _is_array_class(obj: Any) -> bool:
    return isinstance(obj, type) and "numpy" in sys.modules and issubclass(obj, _np().ndarray)


def check_call(func: Any, args: Any) -> None:
    """Refuse calling an array class, directly or through copyreg's helpers."""
    target = func
    if func in (copyreg.__newobj__, copyreg._reconstructor) and isinstance(args, tuple):  # type: ignore[attr-defined]
        target = args[0] if args else None
        if func is copyreg._reconstructor and len(args) > 1 and _is_array_class(args[1]):  # type: ignore[attr-defined]
            target = args[1]
    if _is_array_class(target):
        raise UnsafeArtifactError(
            f"pickle calls the array class {target.__module__}.{target.__qualname__} "
            "directly, which can turn its bytes into object pointers",
            fix="do not load it; NumPy writes arrays through _reconstruct, never like this",
        )


def _fresh(dtype: Any) -> Any:
    """The dtype NumPy itself builds from ``dtype``'s public description."""
    np = _np()
    if dtype.names is not None:
        fields = [dtype.fields[n] for n in dtype.names]
        spec: dict[str, Any] = {
            "names": list(dtype.names),
            "formats": [f[0] for f in fields],
            "offsets": [f[1] for f in fields],
            "itemsize": dtype.itemsize,
            "aligned": bool(dtype.isalignedstruct),
        }
        if any(len(f) > 2 for f in fields):
            spec["titles"] = [f[2] if len(f) > 2 else None for f in fields]
        return np.dtype(spec)
    if dtype.subdtype is not None:
        return np.dtype(dtype.subdtype)
    return np.dtype(dtype.str)


def check_dtype_build(dtype: Any, holders: int, built: set[int]) -> None:
    """Before BUILD on a dtype: nothing but the stack and memo (``holders``) holds it,
    and it was not built before."""
    # getrefcount's own argument, this frame's parameter, the caller's local
    if sys.getrefcount(dtype) > holders + 3 or id(dtype) in built:
        raise UnsafeArtifactError(
            f"pickle rebuilds the dtype {dtype} after other objects refer to it",
            fix="do not load it",
        )
    built.add(id(dtype))


def check_dtype_state(dtype: Any) -> None:
    """After BUILD on a dtype: it is the dtype NumPy would make, flags and size too."""
    try:
        fresh = _fresh(dtype)
        same = (
            fresh == dtype
            and fresh.flags == dtype.flags
            and fresh.itemsize == dtype.itemsize
            and fresh.alignment == dtype.alignment
            and fresh.hasobject == _holds_objects(dtype)
        )
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise _bad_state(dtype, str(exc)) from None
    if not same:
        raise _bad_state(dtype, f"flags {dtype.flags}, size {dtype.itemsize}")


def _holds_objects(dtype: Any) -> bool:
    """Whether ``dtype`` holds Python objects, from its kind and fields, not its flags."""
    if dtype.kind == "O":
        return True
    if dtype.subdtype is not None:
        return _holds_objects(dtype.subdtype[0])
    return any(_holds_objects(f[0]) for f in _fields(dtype))


def _fields(dtype: Any) -> Iterable[Any]:
    return [dtype.fields[n] for n in dtype.names] if dtype.names is not None else []


def _bad_state(dtype: Any, why: str) -> UnsafeArtifactError:
    return UnsafeArtifactError(
        f"pickle gives the dtype {dtype} a state NumPy would never write ({why})",
        fix="do not load it",
    )


def is_dtype(obj: Any) -> bool:
    return "numpy" in sys.modules and isinstance(obj, _np().dtype)


_MT_WORDS = 624


def check_rng_state(obj: Any) -> None:
    """After BUILD: an MT19937 (alone or inside RandomState/Generator) reads inside its key."""
    if "numpy.random" not in sys.modules:
        return
    random = sys.modules["numpy.random"]
    gen = obj
    if isinstance(obj, random.RandomState):
        gen = obj._bit_generator
    elif isinstance(obj, random.Generator):
        gen = obj.bit_generator
    if isinstance(gen, random.MT19937):
        pos = gen.state["state"]["pos"]
        if not 0 <= pos <= _MT_WORDS:
            raise UnsafeArtifactError(
                f"pickle gives an MT19937 generator the read position {pos}, outside its "
                f"{_MT_WORDS}-word state (its next draw would read other memory)",
                fix="do not load it",
            )
