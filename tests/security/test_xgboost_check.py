"""XGBoost JSON and UBJSON model files, mutated: refused or served, never a dead process.

A multiclass classifier with a categorical (string) feature, saved by XGBoost in both
formats, is mutated 1,000 times each: structural edits of the document (numbers, array
entries, lengths, types, keys) and, for UBJSON, byte edits (markers, length fields,
bits, cuts). Each mutant is loaded through the flavor and predicted in one long-lived
worker; a signal is a crash.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

import tiffin
from tests.security._mutation import encode_ubj, mutate_bytes, mutate_document, run_campaign
from tiffin.security.xgboost_check import check_model_bytes, parse_model

MUTANTS = 1000
OPTIONS = {"file": "artifacts/model.ubj", "wrapper": "XGBClassifier", "method": "predict_proba"}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    rng = np.random.default_rng(7)
    n = 240
    frame = pd.DataFrame(
        {
            "amount": rng.normal(size=n),
            "city": pd.Categorical(rng.choice(["oslo", "lima", "pune", "kobe", "quito"], n)),
            "items": rng.integers(0, 9, n).astype(float),
        }
    )
    y = np.where(frame["city"].isin(["lima", "kobe"]), 2, (frame["amount"] > 0).astype(int))
    clf = xgb.XGBClassifier(
        n_estimators=3, max_depth=3, enable_categorical=True, max_cat_to_onehot=1
    ).fit(frame, y)
    folder = tmp_path_factory.mktemp("xgb")
    clf.save_model(str(folder / "model.json"))
    clf.save_model(str(folder / "model.ubj"))
    rows = frame[:16]
    inputs = {"kind": "frame", "columns": {c: rows[c].astype(object).tolist() for c in rows}}
    return folder, inputs


def _in_trees(path: tuple[Any, ...]) -> bool:
    return "trees" in path or "tree_info" in path or "cats" in path or "learner_model_param" in path  # fmt: skip


def json_mutants(data: bytes, seed: int) -> list[bytes]:
    doc = parse_model(data)
    structural = [i for i, c in enumerate(data) if c in b'{}[],:"']
    out = []
    for i in range(MUTANTS):
        rng = random.Random(seed * 100_003 + i)
        if rng.random() < 0.8:
            out.append(json.dumps(mutate_document(doc, rng, _in_trees)).encode())
        else:
            out.append(mutate_bytes(data, rng, structural))
    return out


def ubj_mutants(data: bytes, seed: int) -> list[bytes]:
    doc = parse_model(data)
    encoded, marks = encode_ubj(doc)
    assert encoded == data  # the test's writer is XGBoost's, byte for byte
    out = []
    for i in range(MUTANTS):
        rng = random.Random(seed * 100_003 + i)
        if rng.random() < 0.5:
            out.append(encode_ubj(mutate_document(doc, rng, _in_trees))[0])
        else:
            out.append(mutate_bytes(data, rng, marks))
    return out


@pytest.mark.parametrize("fmt", ["json", "ubj"])
def test_mutants_are_refused_or_predict(
    fmt: str, model: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    folder, inputs = model
    data = (folder / f"model.{fmt}").read_bytes()
    mutants = json_mutants(data, 20) if fmt == "json" else ubj_mutants(data, 21)
    assert len(mutants) == MUTANTS and len(set(mutants)) > 0.9 * MUTANTS
    assert mutants == (json_mutants(data, 20) if fmt == "json" else ubj_mutants(data, 21))
    outcome = run_campaign("xgboost", tmp_path / "pkg", OPTIONS, inputs, [data, *mutants])
    print(f"xgboost {fmt}: {dict(outcome.counts)} in {outcome.seconds:.1f} s")
    assert outcome.crashes == [] and outcome.errors == []
    assert outcome.counts["ok"] > 50  # the campaign reaches the parser and the predictor
    assert outcome.counts["refused"] > 300


def test_json_documents_refuse_repeated_keys_and_other_formats() -> None:
    """XGBoost keeps a repeated key's first value, JSON readers the last: either reading
    could be the one that runs, so the document is refused."""
    cases = {
        "a JSON repeated key": (b'{"learner": {}, "learner": {}}', "twice"),
        "neither format": (b"{1}", "neither"),
    }
    for label, (blob, message) in cases.items():
        with pytest.raises(tiffin.FlavorError, match=message):
            check_model_bytes(blob, label)
