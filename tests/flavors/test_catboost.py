from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import random
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import catboost as cb
import numpy as np
import pandas as pd
import pytest

import tiffin
from tests.conftest import predict_in_fresh_process
from tests.flavors._roundtrip import assert_reproducible, fresh_predict
from tiffin.flavors import catboost as flavor
from tiffin.security.catboost_check import check_model_json

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"verbose": 0, "allow_writing_files": False, "thread_count": 1}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 300
    return pd.DataFrame(
        {
            "amount": rng.normal(size=n),
            "city": rng.choice(["oslo", "lima", "pune", "kyiv"], n),
            "items": rng.integers(0, 9, n),
            "colour": rng.choice(["red", "blue"], n),
        }
    )


CATS = ["city", "colour"]


def _as_json_rows(rows: pd.DataFrame, path: Path) -> str:
    """Rows as a client sends them (plain strings and numbers), and the code to read them."""
    path.write_text(json.dumps({c: rows[c].tolist() for c in rows}))
    return f"json.load(open({str(path)!r}))"


def test_binary_classifier_with_categories_in_a_fresh_process(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    y = ((frame["city"] == "lima") | (frame["amount"] > 0.5)).astype(int)
    clf = cb.CatBoostClassifier(iterations=20, depth=4, cat_features=CATS, **QUIET).fit(frame, y)
    pkg = tiffin.pack(
        clf, tmp_path / "p", name="c", version="1", example=frame[:5], method="predict_proba"
    )
    assert pkg.manifest.flavor == "catboost"
    assert pkg.manifest.runtime["options"]["kind"] == "classifier"
    assert (pkg.path / "artifacts/model.json").read_bytes().startswith(b"{")
    schema = json.loads((pkg.path / "schema.json").read_text())
    assert {i["name"]: i["dtype"] for i in schema["inputs"]}["city"] == "str"
    rows = frame[frame["city"] != "lima"][:40]  # a category left out changes nothing
    got = predict_in_fresh_process(pkg.path, _as_json_rows(rows, tmp_path / "r.json"), tmp_path)
    np.testing.assert_allclose(np.asarray(got["output"]), clf.predict_proba(rows), atol=1e-12)
    labels = tiffin.pack(clf, tmp_path / "q", name="c", version="1", example=frame[:5])
    assert tiffin.load(labels.path).predict(frame).tolist() == clf.predict(frame).tolist()


def test_multiclass_string_labels(tmp_path: Path, frame: pd.DataFrame) -> None:
    y = np.where(frame["city"] == "lima", "fraud", np.where(frame["amount"] > 0, "ok", "check"))
    clf = cb.CatBoostClassifier(iterations=15, depth=3, cat_features=CATS, **QUIET).fit(frame, y)
    proba = tiffin.pack(
        clf, tmp_path / "p", name="c", version="1", example=frame[:5], method="predict_proba"
    )
    np.testing.assert_allclose(
        tiffin.load(proba.path).predict(frame), clf.predict_proba(frame), atol=1e-12
    )
    pkg = tiffin.pack(clf, tmp_path / "q", name="c", version="1", example=frame[:5])
    got = predict_in_fresh_process(
        pkg.path, _as_json_rows(frame[:30], tmp_path / "r.json"), tmp_path
    )
    assert got["output"] == clf.predict(frame[:30]).tolist()


def test_regressor_and_ranker(tmp_path: Path, frame: pd.DataFrame) -> None:
    target = frame["amount"] * 2 + (frame["city"] == "oslo")
    reg = cb.CatBoostRegressor(iterations=15, depth=4, cat_features=CATS, **QUIET)
    reg.fit(frame, target)
    assert_reproducible(reg, tmp_path, name="r", version="1", example=frame[:4])
    pkg = tiffin.load(tmp_path / "repro-a")
    np.testing.assert_allclose(pkg.predict(frame), reg.predict(frame), atol=1e-12)
    groups = np.repeat(np.arange(30), 10)
    ranker = cb.CatBoostRanker(iterations=10, depth=3, cat_features=CATS, **QUIET)
    ranker.fit(frame, frame["items"], group_id=groups)
    packed = tiffin.pack(ranker, tmp_path / "rank", name="r", version="1", example=frame[:4])
    assert packed.manifest.runtime["options"]["kind"] == "ranker"
    got = predict_in_fresh_process(
        packed.path, _as_json_rows(frame[:50], tmp_path / "r.json"), tmp_path
    )
    np.testing.assert_allclose(got["output"], ranker.predict(frame[:50]), atol=1e-12)


def test_non_symmetric_trees_and_a_trained_booster(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    for policy in ("Depthwise", "Lossguide"):
        reg = cb.CatBoostRegressor(iterations=8, depth=4, grow_policy=policy, **QUIET)
        reg.fit(X, X[:, 2])
        pkg = tiffin.pack(reg, tmp_path / policy, name="r", version="1", example=X[:3])
        assert b'"trees"' in (pkg.path / "artifacts/model.json").read_bytes()
        np.testing.assert_allclose(fresh_predict(pkg.path, X, tmp_path), reg.predict(X), atol=1e-12)
    booster = cb.train(cb.Pool(X, y), {"loss_function": "Logloss", "iterations": 5, **QUIET})
    assert type(booster) is cb.CatBoost
    pkg = tiffin.pack(booster, tmp_path / "b", name="b", version="1", example=X[:3])
    assert pkg.manifest.runtime["options"]["kind"] == "model"
    np.testing.assert_allclose(tiffin.load(pkg.path).predict(X), booster.predict(X), atol=1e-12)


def test_json_file_packs_and_cbm_is_refused(tmp_path: Path, frame: pd.DataFrame) -> None:
    y = (frame["amount"] > 0).astype(int)
    clf = cb.CatBoostClassifier(iterations=5, cat_features=CATS, **QUIET).fit(frame, y)
    src = tmp_path / "model.bin"  # recognised by its bytes, whatever its name
    clf.save_model(str(src), format="json")
    assert flavor.detect_file(src)
    pkg = tiffin.pack(
        src, tmp_path / "p", name="c", version="1", example=frame[:3], method="predict_proba"
    )
    assert pkg.manifest.flavor == "catboost"
    assert (pkg.path / "artifacts/model.json").read_bytes() == src.read_bytes()
    np.testing.assert_allclose(
        tiffin.load(pkg.path).predict(frame), clf.predict_proba(frame), atol=1e-12
    )
    cbm = tmp_path / "model.cbm"
    clf.save_model(str(cbm))
    assert flavor.detect_file(cbm)
    with pytest.raises(tiffin.FlavorError, match=r"\.cbm format") as caught:
        tiffin.pack(cbm, tmp_path / "c", name="c", version="1", example=frame[:3])
    assert "load_model" in caught.value.fix and "format='json'" in caught.value.fix
    for name, body in [("a.json", b'{"learner": 1}'), ("b.json", b"[]"), ("e.json", b"")]:
        (tmp_path / name).write_bytes(body)
        assert not flavor.detect_file(tmp_path / name), name
    assert not flavor.detect_file(tmp_path / "missing.json")


def test_refusals(tmp_path: Path, frame: pd.DataFrame) -> None:
    reg = cb.CatBoostRegressor(iterations=3, cat_features=CATS, **QUIET)
    reg.fit(frame, frame["amount"])
    with pytest.raises(tiffin.FlavorError, match="'predict_proba' is not available"):
        tiffin.pack(reg, tmp_path / "a", name="r", version="1", example=frame[:2],
                    method="predict_proba")  # fmt: skip
    with pytest.raises(tiffin.FlavorError, match="not fitted"):
        tiffin.pack(cb.CatBoostClassifier(), tmp_path / "b", name="r", version="1",
                    example=frame[:2])  # fmt: skip
    texts = frame.assign(note=np.where(frame["amount"] > 0, "good day", "bad day"))
    clf = cb.CatBoostClassifier(iterations=3, cat_features=CATS, text_features=["note"], **QUIET)
    clf.fit(texts, (frame["amount"] > 0).astype(int))
    with pytest.raises(tiffin.FlavorError, match="cannot save this model as JSON"):
        tiffin.pack(clf, tmp_path / "c", name="r", version="1", example=texts[:2])
    assert not any(p.name in ("a", "b", "c") for p in tmp_path.iterdir())


def test_statsmodels_results_are_refused_with_the_reason(tmp_path: Path) -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(0)
    X = sm.add_constant(rng.normal(size=(50, 2)))
    results = sm.OLS(X @ [1.0, 2.0, -1.0], X).fit()
    with pytest.raises(tiffin.FlavorError, match="no safe format") as caught:
        tiffin.pack(results, tmp_path / "s", name="s", version="1", example=X[:2])
    assert "custom" in caught.value.fix and "results.params" in caught.value.fix
    assert not (tmp_path / "s").exists()


def _reseal_with(pkg: Path, data: bytes) -> None:
    """Swap the model JSON and re-seal the manifest, as an attacker who can write would."""
    from tiffin.package.integrity import index_files, read_manifest

    (pkg / "artifacts" / "model.json").write_bytes(data)
    resealed = dataclasses.replace(read_manifest(pkg), files=index_files(pkg)).seal()
    (pkg / "tiffin.json").write_bytes(resealed.to_bytes())


def test_malformed_json_is_refused_before_catboost_reads_it(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    """CatBoost's JSON reader divides by hash_stride, walks hash_map past its end and
    keeps split indices unchecked; each of these files must be a FlavorError."""
    y = np.where(frame["city"] == "lima", "a", np.where(frame["amount"] > 0, "b", "c"))
    clf = cb.CatBoostClassifier(iterations=4, depth=3, cat_features=CATS, **QUIET).fit(frame, y)
    pkg = tiffin.pack(clf, tmp_path / "p", name="c", version="1", example=frame[:3]).path
    good = (pkg / "artifacts/model.json").read_bytes()
    doc = json.loads(good)
    table = next(iter(doc["ctr_data"]))

    def edit(path: str, value: Any) -> bytes:
        d = copy.deepcopy(doc)
        keys = path.split("/")
        target = d
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        last = keys[-1]
        if value is _DROP:
            target.pop(int(last) if isinstance(target, list) else last)
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
        return json.dumps(d).encode()

    splits = "oblivious_trees/0/splits"
    first = doc["oblivious_trees"][0]["splits"][0]["split_index"]
    cases = {
        "split index out of range": (edit(f"{splits}/0/split_index", 10_000), "split_index"),
        "negative split index": (edit(f"{splits}/0/split_index", -1), "split_index"),
        "split names another border": (edit(f"{splits}/0/split_index", first + 1), "not match"),
        "leaf values short": (edit("oblivious_trees/0/leaf_values/0", _DROP), "leaf values"),
        "too deep": (edit(splits, doc["oblivious_trees"][0]["splits"] * 6), "deeper than"),
        "hash stride zero": (edit(f"ctr_data/{table}/hash_stride", 0), "hash_stride"),
        "hash map cut": (edit(f"ctr_data/{table}/hash_map/1", _DROP), "multiple of"),
        "flat index twice": (
            edit("features_info/categorical_features/0/flat_feature_index", 0), "flat_feature"),
        "unknown ctr type": (edit("features_info/ctrs/0/ctr_type", "Magic"), "CTR type"),
        "bias length": (edit("scale_and_bias/1", [0.0]), "bias"),
        "not json": (good[:-10], "not JSON"),
        "duplicate key": (b'{"model_info": {}, ' + good[1:], "repeats a key"),
        "NaN literal": (edit("oblivious_trees/0/leaf_values/0", "nan").replace(b'"nan"', b"NaN"), "not JSON"),
    }  # fmt: skip
    for label, (data, message) in cases.items():
        assert data != good, label
        _reseal_with(pkg, data)
        with pytest.raises(tiffin.FlavorError, match=message) as caught:
            tiffin.load(pkg)
        assert "malformed CatBoost model JSON" in str(caught.value), label
    _reseal_with(pkg, good)
    assert tiffin.load(pkg).predict(frame[:5]).tolist() == clf.predict(frame[:5]).tolist()


_DROP = object()


def test_every_kind_of_model_passes_the_check(frame: pd.DataFrame) -> None:
    """What CatBoost writes, the check accepts: one-hot and CTR features of the CPU types,
    NaN modes, one-vs-all multiclass, non-symmetric trees with categories."""
    with_nans = frame.assign(amount=frame["amount"].where(frame.index % 7 != 0))
    y = (frame["amount"] > 0).astype(int)
    models = [
        cb.CatBoostClassifier(iterations=4, one_hot_max_size=4, cat_features=CATS, **QUIET)
        .fit(frame, y),
        cb.CatBoostClassifier(iterations=4, nan_mode="Max", cat_features=CATS, **QUIET,
                              simple_ctr=["Buckets", "Counter"]).fit(with_nans, y),
        cb.CatBoostRegressor(iterations=4, cat_features=CATS, **QUIET,
                             simple_ctr=["Borders", "Counter"])
        .fit(frame, frame["amount"]),
        cb.CatBoostClassifier(iterations=4, loss_function="MultiClassOneVsAll",
                              cat_features=CATS, **QUIET).fit(frame, frame["items"] % 3),
        cb.CatBoostRegressor(iterations=4, grow_policy="Lossguide", cat_features=CATS, **QUIET)
        .fit(frame, frame["amount"]),
    ]  # fmt: skip
    for model in models:
        raw = flavor._export(cb, model)
        check_model_json(raw, type(model).__name__)


# -- mutants, loaded one by one in a long-lived worker ----------------------------------

_WORKER = """
import base64, json, sys
from pathlib import Path
import pandas as pd
from tiffin.errors import TiffinError
from tiffin.flavors import LoadContext, catboost as flavor
folder, options, rows = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
x = pd.DataFrame(rows)
(folder / "artifacts").mkdir(parents=True, exist_ok=True)
print("ready", flush=True)
for line in sys.stdin:
    (folder / "artifacts" / "model.json").write_bytes(base64.b64decode(line))
    try:
        flavor.load(LoadContext(path=folder, options=options)).predict(x)
        answer = "ok"
    except TiffinError:
        answer = "refused"
    except Exception as exc:
        answer = "error " + type(exc).__name__
    print(answer, flush=True)
"""


class _Worker:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER, *self.argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        self.starts += 1
        assert self._line(proc, 120) == "ready"
        return proc

    @staticmethod
    def _line(proc: subprocess.Popen[bytes], timeout: float) -> str | None:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            return None
        return proc.stdout.readline().decode().strip() or None

    def run(self, data: bytes, timeout: float = 30) -> str:
        """``ok``, ``refused``, ``error <type>``, or ``crash``/``hang`` for the mutant in flight."""
        if self.proc is None:
            self.proc = self._start()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(base64.b64encode(data) + b"\n")
            self.proc.stdin.flush()
            answer = self._line(self.proc, timeout)
        except BrokenPipeError:
            answer = None
        if answer is None:
            code = self.proc.poll()
            if code is None:  # the pipe closed first: give the exit a moment to land
                try:
                    code = self.proc.wait(5) if self.proc else None
                except subprocess.TimeoutExpired:
                    code = None
            self.close()
            return "hang" if code is None else f"crash ({code})"
        return answer

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.proc = None


def _mutants(good: bytes, count: int, seed: int) -> list[bytes]:
    """Seeded mutants: JSON-aware edits of one value (most of them) and raw byte damage."""
    rng = random.Random(seed)
    doc = json.loads(good)
    slots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            slots.append((node, key))
            if isinstance(value, (dict, list)):
                walk(value)

    walk(doc)
    replacements = [-1, 0, 1, 2, 7, 64, 2**31, 2**63, -(2**40), 0.5, 1e308, "", "x",
                    "18446744073709551615", None, True, [], {}, [0], {"a": 1}]  # fmt: skip
    out: list[bytes] = []
    while len(out) < count:
        if rng.random() < 0.15:
            raw = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            out.append(bytes(raw) if rng.random() < 0.7 else bytes(raw[: rng.randrange(len(raw))]))
            continue
        container, key = slots[rng.randrange(len(slots))]
        old = container[key]
        choice = rng.random()
        if choice < 0.15:
            new_value = _DROP
        elif choice < 0.3 and isinstance(old, (int, float)) and not isinstance(old, bool):
            new_value = old + rng.choice([-1, 1, 3, -1000])
        elif choice < 0.4 and isinstance(old, list) and old:
            new_value = old + old[: rng.randint(1, len(old))]
        else:
            new_value = rng.choice(replacements)
        if new_value is _DROP:
            container.pop(key)
        else:
            container[key] = new_value
        out.append(json.dumps(doc).encode())
        if new_value is _DROP:
            if isinstance(container, list):
                container.insert(key, old)
            else:
                container[key] = old
        else:
            container[key] = old
    return out


def test_mutants_never_crash_the_process(tmp_path: Path, frame: pd.DataFrame) -> None:
    """300 seeded mutants of a model JSON with one-hot and CTR features, each loaded and run
    in one long-lived worker: a mutant is refused (FlavorError) or predicts; the process
    never dies by a signal, hangs or raises anything but a TiffinError."""
    y = np.where(frame["city"] == "lima", "a", np.where(frame["amount"] > 0, "b", "c"))
    clf = cb.CatBoostClassifier(
        iterations=6, depth=3, one_hot_max_size=2, cat_features=CATS, **QUIET
    ).fit(frame, y)
    good = flavor._export(cb, clf)
    options = {"file": flavor.FILE, "kind": "classifier", "method": "predict_proba"}
    rows = {c: frame[c][:20].tolist() for c in frame}
    worker = _Worker([str(tmp_path / "pkg"), json.dumps(options), json.dumps(rows)])
    outcomes: dict[str, int] = {}
    bad: list[tuple[int, str]] = []
    try:
        assert worker.run(good) == "ok"
        for i, mutant in enumerate(_mutants(good, 300, seed=27)):
            answer = worker.run(mutant)
            outcomes[answer] = outcomes.get(answer, 0) + 1
            if answer not in ("ok", "refused"):
                bad.append((i, answer))
    finally:
        worker.close()
    assert not bad, (bad, outcomes)
    assert outcomes["refused"] > 100 and outcomes.get("ok", 0) > 10, outcomes
