"""Mutants of a skops file, and a long-lived worker process that loads and predicts them.

The worker reads mutants one by one from its stdin (4-byte length, then the bytes),
loads each through tiffin's skops path and predicts, and answers one JSON line per
mutant. If it dies by a signal, the mutant in flight crashed it; the campaign records
that and starts a new worker. A mutant that takes longer than ``hang_s`` is a hang.
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import select
import struct
import subprocess
import sys
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

WORKER = r"""
import json, struct, sys
import numpy as np
from tiffin.errors import TiffinError
from tiffin.flavors.sklearn import load_bytes

X = np.load(sys.argv[1])
stdin, out = sys.stdin.buffer, sys.stdout
out.write("ready\n"); out.flush()
while True:
    head = stdin.read(4)
    if len(head) < 4:
        break
    data = stdin.read(struct.unpack(">I", head)[0])
    try:
        model = load_bytes(data)
    except TiffinError as exc:
        reply = {"outcome": "refused", "detail": type(exc).__name__ + ": " + exc.message[:200]}
    except BaseException as exc:
        reply = {"outcome": "untyped", "detail": type(exc).__name__ + ": " + str(exc)[:200]}
    else:
        try:
            for method in ("predict", "predict_proba", "decision_function", "apply"):
                if hasattr(model, method):
                    getattr(model, method)(X)
            reply = {"outcome": "predicted", "detail": ""}
        except BaseException as exc:
            reply = {"outcome": "predict-error", "detail": type(exc).__name__ + ": " + str(exc)[:200]}
    out.write(json.dumps(reply) + "\n"); out.flush()
"""

_NUMBERS = (-(2**63), -(2**31), -2, -1, 0, 1, 2, 3, 7, 2**31 - 1, 2**31, 2**32, 2**63 - 1)
_FLOATS = (float("nan"), float("inf"), -float("inf"), 1e308, -1e-308, 0.5)


class Worker:
    def __init__(self, x_path: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(x_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        line = self._readline(120)
        if line != "ready":
            raise RuntimeError(f"worker did not start: {line!r}")

    def _readline(self, timeout: float) -> str | None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return self.proc.stdout.readline().decode().strip()

    def run(self, data: bytes, hang_s: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._readline(hang_s)
        if line is None:
            self.proc.kill()
            self.proc.wait()
            return {"outcome": "hang", "detail": ""}
        if not line:
            code = self.proc.wait()
            return {"outcome": "crash", "detail": f"exit {code}"}
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        if not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass


def campaign(
    mutants: Iterator[bytes], x_path: Path, *, hang_s: float = 20.0
) -> tuple[Counter[str], list[tuple[int, dict[str, Any]]]]:
    """Run every mutant through a worker; counts per outcome and the bad ones."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    worker = Worker(x_path, env)
    counts: Counter[str] = Counter()
    bad: list[tuple[int, dict[str, Any]]] = []
    try:
        for i, data in enumerate(mutants):
            reply = worker.run(data, hang_s)
            counts[reply["outcome"]] += 1
            if reply["outcome"] != "predicted" and reply["outcome"] != "refused":
                bad.append((i, reply))
            if reply["outcome"] in ("crash", "hang", "untyped"):
                worker.close()
                worker = Worker(x_path, env)
    finally:
        worker.close()
    return counts, bad


# -- mutants -----------------------------------------------------------------------------


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return buf.getvalue()


def _nodes(tree: Any) -> list[dict[str, Any]]:
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _any_number(rng: random.Random, old: Any) -> Any:
    choice = rng.random()
    if isinstance(old, float) or choice < 0.2:
        return rng.choice((*_FLOATS, old * 2 if isinstance(old, (int, float)) else 0))
    if isinstance(old, int) and choice < 0.6:
        return old + rng.choice((-2, -1, 1, 2))
    return rng.choice(_NUMBERS)


def _edit_json_number(rng: random.Random, schema: Any) -> bool:
    targets = [
        n for n in _nodes(schema)
        if n.get("__loader__") == "JsonNode" and isinstance(n.get("content"), str)
        and isinstance(_try_json(n["content"]), (int, float)) and not isinstance(_try_json(n["content"]), bool)
    ]  # fmt: skip
    if not targets:
        return False
    node = rng.choice(targets)
    node["content"] = json.dumps(_any_number(rng, json.loads(node["content"])))
    return True


def _try_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


_LOADERS = (
    "ObjectNode", "TreeNode", "NdArrayNode", "JsonNode", "ListNode", "DictNode", "TupleNode",
    "FunctionNode", "TypeNode", "ConstructorFromReduceNode", "PartialNode", "MethodNode",
    "CachedNode", "LossNode", "DTypeNode",
)  # fmt: skip


def _edit_json_structure(rng: random.Random, schema: Any) -> bool:
    nodes = [n for n in _nodes(schema) if n]
    node = rng.choice(nodes)
    key = rng.choice(list(node))
    kind = rng.randrange(8)
    if kind == 0:
        del node[key]
    elif kind == 1 and "__loader__" in node:
        node["__loader__"] = rng.choice(_LOADERS)
    elif kind == 2:
        other = rng.choice(nodes)
        node[key] = copy.deepcopy(other)
    elif kind == 3:
        node[key] = rng.choice([None, [], {}, "x", 0, -1, 2**40, [1, 2], {"a": 1}])
    elif kind == 4 and isinstance(node.get("__id__"), int):
        node["__id__"] = rng.choice([n.get("__id__") for n in nodes if "__id__" in n] + [0, -1])
    elif kind == 5:
        lists = [n for n in _nodes(schema) if isinstance(n.get("content"), list) and n["content"]]
        if not lists:
            return False
        items = rng.choice(lists)["content"]
        if rng.random() < 0.5:
            items.pop(rng.randrange(len(items)))
        else:
            items.insert(rng.randrange(len(items) + 1), copy.deepcopy(rng.choice(items)))
    elif kind == 6 and "shape" in node:
        node["shape"] = rng.choice([None, "[1]", "[-1]", "[100000000]", "[0]"])
    else:
        if "__class__" not in node:
            return False
        node["__class__"] = rng.choice(["Tree", "ndarray", "dict", "TreePredictor", "partial", "x"])
    return True


def _edit_array(rng: random.Random, members: dict[str, bytes], name: str) -> bool:
    try:
        arr = np.load(io.BytesIO(members[name]), allow_pickle=False)
    except Exception:  # an earlier edit broke this member's header: edit another
        return False
    kind = rng.randrange(10)
    if kind < 5 and arr.size:  # one entry
        arr = arr.copy()
        flat = arr.reshape(-1)
        i = rng.randrange(flat.size)
        if arr.dtype.names:
            field = rng.choice(arr.dtype.names)
            old = flat[field][i].item() if flat[field][i].ndim == 0 else 0
            try:
                flat[field][i] = _any_number(rng, old)
            except (OverflowError, ValueError, TypeError):
                flat[field][i] = (
                    np.iinfo(flat[field].dtype).max if flat[field].dtype.kind in "iu" else 0
                )
        else:
            try:
                flat[i] = _any_number(rng, flat[i].item())
            except (OverflowError, ValueError, TypeError):
                flat[i] = 1
    elif kind == 5:  # length
        arr = arr[: rng.randrange(arr.shape[0] + 1)] if arr.ndim else arr
    elif kind == 6 and arr.ndim:
        arr = np.concatenate([arr, arr[: rng.randrange(1, 4)]])
    elif kind == 7:  # dtype
        if arr.dtype.names:
            keep = [f for f in arr.dtype.names if rng.random() < 0.8]
            arr = arr[keep] if keep else arr.view(np.uint8)
        else:
            arr = arr.astype(rng.choice([np.int32, np.float32, np.int64, np.uint8, np.float64]))
    elif kind == 8 and arr.ndim:  # shape
        arr = arr.reshape(-1) if arr.ndim > 1 else arr.reshape(1, -1)
    else:  # raw bytes of the member
        body = bytearray(members[name])
        for _ in range(rng.randrange(1, 4)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        members[name] = bytes(body)
        return True
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    members[name] = buf.getvalue()
    return True


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One mutant: a few edits of numbers, array entries, lengths, dtypes or structure."""
    members = _members(data)
    schema = json.loads(members["schema.json"])
    arrays = [n for n in members if n.endswith(".npy")]
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        roll = rng.random()
        if roll < 0.45 and arrays:
            _edit_array(rng, members, rng.choice(arrays))
        elif roll < 0.7:
            _edit_json_number(rng, schema)
        elif roll < 0.95:
            _edit_json_structure(rng, schema)
        elif arrays:
            del members[rng.choice(arrays)]
            arrays = [n for n in members if n.endswith(".npy")]
    members["schema.json"] = json.dumps(schema).encode()
    return _zip(members)


def mutants(data: bytes, count: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(count):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the edits cast NaN to int on purpose
            mutant = mutate(data, rng)
        yield mutant


Factory = Callable[[], Any]
