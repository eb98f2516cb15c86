"""numpy_guard: the array class never called directly, dtypes only in states NumPy writes,
MT19937 read positions inside the key. Each check called as the unpickler calls it; the
whole unpickler is tested in test_unpickler.py."""

from __future__ import annotations

import copyreg
from typing import Any

import numpy as np
import pytest

from tiffin.errors import UnsafeArtifactError
from tiffin.security import numpy_guard

_reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # what NumPy's own pickles call


class Sub(np.ndarray):
    pass


@pytest.mark.parametrize(
    ("func", "args"),
    [
        (np.ndarray, ((2,), "O")),
        (np.recarray, ((1,), [("a", "O")])),
        (np.memmap, ()),
        (Sub, ((1,),)),
        (copyreg.__newobj__, (np.ndarray, (4,), "O")),  # type: ignore[attr-defined]
        (copyreg.__newobj__, (Sub,)),  # type: ignore[attr-defined]
        (copyreg._reconstructor, (object, np.ndarray, None)),  # type: ignore[attr-defined]
        (copyreg._reconstructor, (Sub, Sub, None)),  # type: ignore[attr-defined]
    ],
    ids=[
        "ndarray",
        "recarray",
        "memmap",
        "subclass",
        "newobj",
        "newobj-sub",
        "recon-base",
        "recon-class",
    ],
)
def test_calling_an_array_class_is_refused(func: Any, args: Any) -> None:
    with pytest.raises(UnsafeArtifactError, match="calls the array class") as info:
        numpy_guard.check_call(func, args)
    assert "_reconstruct" in (info.value.fix or "")


@pytest.mark.parametrize(
    ("func", "args"),
    [
        (_reconstruct, (np.ndarray, (0,), b"b")),  # the array class as an argument is fine
        (np.dtype, ("f8", False, True)),
        (list, ()),
        (copyreg.__newobj__, (dict,)),  # type: ignore[attr-defined]
        (copyreg.__newobj__, ()),  # type: ignore[attr-defined]
        (copyreg.__newobj__, "not a tuple"),  # type: ignore[attr-defined]
        (copyreg._reconstructor, (dict, object, None)),  # type: ignore[attr-defined]
        (np.float64, (1.0,)),
    ],
)
def test_other_calls_pass(func: Any, args: Any) -> None:
    numpy_guard.check_call(func, args)


def _copy(spec: Any) -> Any:
    """A dtype object of its own (copy=True), as a pickle builds one: never a shared one."""
    return np.dtype(spec, False, True)


@pytest.mark.parametrize(
    "spec",
    [
        "f8",
        ">i4",
        "O",
        "U7",
        "M8[ns]",
        "(2,3)f4",
        {"names": ["a", "b"], "formats": ["f8", "O"], "offsets": [0, 8], "itemsize": 24},
        np.dtype([("a", "u1"), ("b", "f8")], align=True),
        np.dtype({"names": ["x"], "formats": ["i2"], "titles": ["the x"]}),
    ],
)
def test_dtypes_numpy_writes_pass(spec: Any) -> None:
    dtype = _copy(spec)
    dtype.__setstate__(dtype.__reduce__()[2])  # what BUILD does with NumPy's own state
    numpy_guard.check_dtype_state(dtype)
    assert numpy_guard.is_dtype(dtype)


def _state(dtype: Any, **change: int) -> tuple[Any, ...]:
    state = list(dtype.__reduce__()[2])
    for key, value in change.items():
        state[{"elsize": 5, "alignment": 6, "flags": 7}[key]] = value
    return tuple(state)


@pytest.mark.parametrize(
    ("spec", "change"),
    [
        ("O", {"flags": 0}),  # an object dtype that no longer says so: bytes as pointers
        ("f8", {"flags": 63}),  # a float dtype claiming to hold objects
    ],
)
def test_dtype_states_numpy_never_writes_are_refused(spec: str, change: dict[str, int]) -> None:
    dtype = _copy(spec)
    dtype.__setstate__(_state(dtype, **change))
    with pytest.raises(UnsafeArtifactError, match="a state NumPy would never write"):
        numpy_guard.check_dtype_state(dtype)


def test_a_structured_dtype_smaller_than_its_fields_is_refused() -> None:
    dtype = _copy("V16")
    fields = {"a": (np.dtype("f8"), 0), "b": (np.dtype("f8"), 8)}
    dtype.__setstate__((3, "|", None, ("a", "b"), fields, 4, 1, 16))
    with pytest.raises(UnsafeArtifactError, match="a state NumPy would never write"):
        numpy_guard.check_dtype_state(dtype)


def test_a_dtype_is_built_once_and_only_while_unshared() -> None:
    built: set[int] = set()
    dtype = _copy("V8")
    numpy_guard.check_dtype_build(dtype, 0, built)  # only this frame holds it
    with pytest.raises(UnsafeArtifactError, match="after other objects refer to it"):
        numpy_guard.check_dtype_build(dtype, 0, built)  # the same dtype a second time
    other = _copy("V8")
    holder = [other]  # something else refers to it now
    with pytest.raises(UnsafeArtifactError, match="after other objects refer to it"):
        numpy_guard.check_dtype_build(other, 0, set())
    numpy_guard.check_dtype_build(other, 1, set())  # ... unless that one is counted
    assert holder


def _at(pos: int) -> np.random.MT19937:
    bitgen = np.random.MT19937(0)
    state = bitgen.state
    state["state"]["pos"] = pos
    bitgen.state = state  # NumPy takes it as given; nothing is drawn from it here
    return bitgen


@pytest.mark.parametrize("pos", [0, 624])
def test_positions_inside_the_key_pass(pos: int) -> None:
    bitgen = _at(pos)
    for obj in (bitgen, np.random.RandomState(bitgen), np.random.Generator(bitgen)):
        numpy_guard.check_rng_state(obj)
    numpy_guard.check_rng_state(np.random.PCG64(0))  # other generators hold no position
    numpy_guard.check_rng_state(object())


@pytest.mark.parametrize("pos", [625, 10**8, -1])
def test_positions_outside_the_key_are_refused(pos: int) -> None:
    bitgen = _at(pos)
    for obj in (bitgen, np.random.RandomState(bitgen), np.random.Generator(bitgen)):
        with pytest.raises(UnsafeArtifactError, match=f"read position {pos}, outside"):
            numpy_guard.check_rng_state(obj)


def test_is_dtype() -> None:
    assert numpy_guard.is_dtype(np.dtype("f8"))
    assert not numpy_guard.is_dtype("f8") and not numpy_guard.is_dtype(np.float64)
