"""Mutation campaigns against the native model readers, run in one long-lived worker.

The parent makes seeded, deterministic mutants of a model file and sends them one by
one to a worker subprocess, which writes each into a package folder, loads it with the
flavor's ``load`` (tiffin's checks, then the framework's parser) and predicts a fixed
input. The worker answers one line per mutant. If it dies by a signal, the mutant in
flight is the crash; the parent records it, starts a new worker and goes on. A mutant
that takes longer than the timeout is a hang.

Run as a module, this file is the worker:
``python -m tests.security._mutation FLAVOR FOLDER OPTIONS_JSON INPUT_JSON [raw]``
(``raw`` skips tiffin and calls the framework directly, to measure what the checks
prevent).
"""

from __future__ import annotations

import copy
import json
import os
import random
import select
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


# -- the parent ----------------------------------------------------------------------


@dataclass
class Outcome:
    counts: Counter[str] = field(default_factory=Counter)
    crashes: list[tuple[int, str]] = field(default_factory=list)  # (mutant, signal or hang)
    errors: list[tuple[int, str]] = field(default_factory=list)  # not a TiffinError
    answers: list[tuple[str, str]] = field(default_factory=list)  # per mutant, in order
    seconds: float = 0.0


class Worker:
    def __init__(self, argv: list[str], timeout: float) -> None:
        self.argv, self.timeout = argv, timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.security._mutation", *self.argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
        )
        assert proc.stdout is not None
        ready = self._line(proc, 120.0)
        if ready != "ready":
            proc.kill()
            proc.wait()
            self._close_pipes(proc)
            raise RuntimeError(f"the mutation worker did not start: {ready!r}")
        return proc

    def _line(self, proc: subprocess.Popen[bytes], timeout: float) -> str | None:
        """One answer line, or None if the worker died or ran past the timeout."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            buf += chunk
        return buf.decode().strip()

    def send(self, data: bytes) -> tuple[str, str]:
        """(``ok`` | ``refused`` | ``error`` | ``crash`` | ``hang``, detail)."""
        if self.proc is None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None
        try:
            proc.stdin.write(struct.pack(">Q", len(data)) + data)
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._line(proc, self.timeout)
        if line is not None:
            kind, _, detail = line.partition(" ")
            if kind not in ("ok", "refused", "error"):
                raise RuntimeError(f"the mutation worker answered {line[:200]!r}")
            return kind, detail
        hung = proc.poll() is None
        proc.kill()
        code = proc.wait()
        self._close_pipes(proc)
        self.proc = None
        return ("hang", f"over {self.timeout:g} s") if hung else ("crash", f"exit {code}")

    @staticmethod
    def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass

    def close(self) -> None:
        if self.proc is not None:
            self._close_pipes(self.proc)
            self.proc.wait(timeout=30)
            self.proc = None


def run_campaign(
    flavor: str,
    folder: Path,
    options: dict[str, Any],
    inputs: dict[str, Any],
    mutants: Iterable[bytes],
    *,
    raw: bool = False,
    timeout: float = 60.0,
) -> Outcome:
    folder.mkdir(parents=True, exist_ok=True)
    argv = [flavor, str(folder), json.dumps(options), json.dumps(inputs)] + (["raw"] if raw else [])
    worker = Worker(argv, timeout)
    outcome = Outcome()
    start = time.perf_counter()
    try:
        for index, data in enumerate(mutants):
            kind, detail = worker.send(data)
            outcome.counts[kind] += 1
            outcome.answers.append((kind, detail))
            if kind in ("crash", "hang"):
                outcome.crashes.append((index, detail))
            elif kind == "error":
                outcome.errors.append((index, detail))
    finally:
        worker.close()
    outcome.seconds = time.perf_counter() - start
    return outcome


# -- mutants -------------------------------------------------------------------------

_INTS = [-(2**63), -(2**31), -(2**31) + 1, -2, -1, 0, 1, 2, 3, 7, 255, 256, 2**31 - 1, 2**31, 2**32, 2**40]  # fmt: skip
_FLOATS = [float("nan"), float("inf"), -float("inf"), 1e38, -0.0, 0.5, 1e-45]
_TEXTS = ["-1", "0", "1", "2", "3", "99", "4294967295", "2147483648", "1e3", "x", "", "[1,2]", "[]", "[nan]", "[0.5,0.5,0.5,0.5,0.5]"]  # fmt: skip


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list) and doc and isinstance(doc[0], (dict, list)):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    _get(doc, path[:-1])[path[-1]] = value


def _as_list(value: Any) -> list[Any] | None:
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value if isinstance(value, list) else None


def _rebuild(old: Any, values: list[Any]) -> Any:
    """A mutated array in the old array's kind (a typed UBJSON array keeps its dtype)."""
    if isinstance(old, np.ndarray):
        kind = old.dtype
        if kind.kind == "f":
            return np.asarray(values, dtype=np.float64).astype(kind)
        wrapped = [int(v) & ((1 << (8 * kind.itemsize)) - 1) if not isinstance(v, float) else 0 for v in values]  # fmt: skip
        return np.asarray(wrapped, dtype=np.uint64).astype(kind.str.replace("i", "u")).view(kind)
    return values


def mutate_document(doc: Any, rng: random.Random, focus: Callable[[tuple[Any, ...]], bool]) -> Any:
    """One structural edit of a parsed document: a number, an array entry, a length,
    a type or a key; paths where ``focus`` holds (the trees) are picked more often."""
    doc = copy.deepcopy(doc)
    paths = [p for p in _paths(doc) if p]
    hot = [p for p in paths if focus(p)]
    path = rng.choice(hot if hot and rng.random() < 0.75 else paths)
    value = _get(doc, path)
    items = _as_list(value)
    op = rng.random()
    if items is not None and items and op < 0.55:
        i = rng.randrange(len(items))
        n = len(items)
        sub = rng.random()
        if sub < 0.5:
            items[i] = rng.choice([*_INTS, n - 1, n, n + 1, i, i - 1, items[i] + 1 if isinstance(items[i], int) else 0])  # fmt: skip
        elif sub < 0.6:
            items[i] = rng.choice(_FLOATS)
        elif sub < 0.75:
            del items[i]
        elif sub < 0.9:
            items.insert(i, items[rng.randrange(n)])
        else:
            items = items[: rng.randrange(n)]
        _set(doc, path, _rebuild(value, items))
    elif isinstance(value, str) and op < 0.8:
        _set(doc, path, rng.choice(_TEXTS))
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and op < 0.8:
        _set(doc, path, rng.choice([*_INTS, *_FLOATS, value + 1, value - 1]))
    elif isinstance(value, dict) and value and op < 0.8:
        key = rng.choice(list(value))
        if rng.random() < 0.5:
            del value[key]
        else:
            other = rng.choice(list(value))
            value[key], value[other] = value[other], value[key]
    else:
        _set(doc, path, rng.choice([{}, [], "x", 1, 1.5, None, True, [0], {"a": 1}]))
    return doc


def mutate_bytes(data: bytes, rng: random.Random, offsets: list[int]) -> bytes:
    """One byte-level edit, biased to ``offsets`` (markers and lengths)."""
    buf = bytearray(data)
    at = rng.choice(offsets) if offsets and rng.random() < 0.7 else rng.randrange(len(buf))
    op = rng.random()
    if op < 0.3:
        buf[at] = rng.choice(b"{}[]$#ZTFdDSHCiUIlL\x00\xff")
    elif op < 0.5:
        width = rng.choice([1, 2, 4, 8])
        value = rng.choice([*_INTS, len(buf), len(buf) - at])
        buf[at : at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")
    elif op < 0.65:
        buf[at] ^= 1 << rng.randrange(8)
    elif op < 0.8:
        return bytes(buf[: rng.randrange(len(buf))])
    elif op < 0.9:
        del buf[at : at + rng.choice([1, 1, 2, 8])]
    else:
        buf[at:at] = bytes([rng.randrange(256)])
    return bytes(buf)


# -- UBJSON as XGBoost writes it ----------------------------------------------------

_TYPED = {"float32": b"d", "int8": b"i", "uint8": b"U", "int32": b"l", "int64": b"L"}


def _encode(doc: Any, out: bytearray, marks: list[int]) -> None:
    marks.append(len(out))
    if isinstance(doc, dict):
        out += b"{"
        for key, value in doc.items():
            raw = key.encode()
            marks.append(len(out))
            out += b"L" + struct.pack(">q", len(raw)) + raw
            _encode(value, out, marks)
        out += b"}"
    elif isinstance(doc, np.ndarray):
        out += b"[$" + _TYPED[doc.dtype.name] + b"#"
        marks.append(len(out))
        out += b"L" + struct.pack(">q", len(doc)) + doc.astype(doc.dtype.newbyteorder(">")).tobytes()  # fmt: skip
    elif isinstance(doc, list):
        out += b"[#"
        marks.append(len(out))
        out += b"L" + struct.pack(">q", len(doc))
        for value in doc:
            _encode(value, out, marks)
    elif isinstance(doc, str):
        raw = doc.encode()
        out += b"SL" + struct.pack(">q", len(raw)) + raw
    elif isinstance(doc, bool):
        out += b"T" if doc else b"F"
    elif doc is None:
        out += b"Z"
    elif isinstance(doc, int):
        for marker, fmt, bound in ((b"i", ">b", 1 << 7), (b"I", ">h", 1 << 15), (b"l", ">i", 1 << 31)):  # fmt: skip
            if -bound < doc < bound - 1:
                out += marker + struct.pack(fmt, doc)
                return
        out += b"L" + struct.pack(">q", doc & ((1 << 64) - 1) if doc >= 1 << 63 else max(doc, -(1 << 63)))  # fmt: skip
    else:
        out += b"d" + struct.pack(">f", float(doc) if abs(float(doc)) < 3.4e38 else float("inf"))


def encode_ubj(doc: Any) -> tuple[bytes, list[int]]:
    out: bytearray = bytearray()
    marks: list[int] = []
    _encode(doc, out, marks)
    return bytes(out), marks


# -- the worker ----------------------------------------------------------------------


def _inputs(spec: dict[str, Any]) -> Any:
    if spec["kind"] == "frame":
        import pandas as pd

        return pd.DataFrame(spec["columns"])
    return np.asarray(spec["rows"], dtype=spec.get("dtype", "float64"))


def _raw_runner(flavor: str, file: Path, inputs: Any) -> Callable[[], Any]:
    if flavor == "xgboost":
        import pandas as pd
        import xgboost as xgb

        if isinstance(inputs, pd.DataFrame):
            inputs = inputs.copy()
            for column in inputs.columns:
                if not pd.api.types.is_numeric_dtype(inputs[column]):
                    inputs[column] = pd.Categorical(inputs[column])

        def run() -> Any:
            booster = xgb.Booster()
            booster.load_model(bytearray(file.read_bytes()))
            return booster.predict(xgb.DMatrix(inputs, enable_categorical=True))

        return run
    import lightgbm as lgb

    def run_lgb() -> Any:
        return lgb.Booster(model_str=file.read_bytes().decode("utf-8", "replace")).predict(inputs)

    return run_lgb


def _serve(argv: list[str]) -> None:
    import tiffin
    from tiffin.flavors import LoadContext, get

    flavor, folder, options = argv[0], Path(argv[1]), json.loads(argv[2])
    inputs = _inputs(json.loads(argv[3]))
    raw = argv[4:] == ["raw"]
    module = get(flavor)
    file = folder / options["file"]
    file.parent.mkdir(parents=True, exist_ok=True)
    run = _raw_runner(flavor, file, inputs)
    # Answers go to a private copy of stdout; native libraries that print (LightGBM's
    # warnings) write to fd 1, which now points at stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    out.write(b"ready\n")
    out.flush()
    stdin = sys.stdin.buffer
    while True:
        head = stdin.read(8)
        if len(head) < 8:
            return
        file.write_bytes(stdin.read(struct.unpack(">Q", head)[0]))
        try:
            if raw:
                result = run()
            else:
                model = module.load(LoadContext(path=folder, options=options))
                result = model.predict(inputs)
            np.asarray(result)
            answer = "ok"
        except tiffin.TiffinError as exc:
            answer = f"refused {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        except Exception as exc:  # anything else is a finding; the parent reports it
            answer = f"error {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"  # fmt: skip
        out.write(answer.replace("\n", " ").encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    _serve(sys.argv[1:])
