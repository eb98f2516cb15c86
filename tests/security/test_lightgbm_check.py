"""LightGBM model text, mutated: refused or served, never a dead process.

A multiclass booster with a categorical feature is mutated 1,000 times: numbers and
array entries replaced, entries dropped or repeated, lines dropped, repeated, renamed
or swapped, cuts, and byte edits (line ends, separators, carriage returns, NUL). Most
mutants get ``tree_sizes`` recomputed, as a careful attacker would, so that the edit
reaches the tree checks and LightGBM's parser. Each mutant is loaded through the
flavor and predicted in one long-lived worker; a signal is a crash.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from tests.security._mutation import mutate_bytes, run_campaign

MUTANTS = 1000
OPTIONS = {"file": "artifacts/model.txt", "method": "predict"}
_TOKENS = ["-1", "0", "1", "2", "3", "-2", "7", "31", "-8", "2147483647", "-2147483648", "2147483648", "4294967296", "nan", "inf", "-inf", "1e308", "0.5", "x", "", "1-2", "e"]  # fmt: skip


@pytest.fixture(scope="module")
def model() -> tuple[str, dict[str, Any]]:
    rng = np.random.default_rng(11)
    n = 400
    X = rng.normal(size=(n, 4))
    X[:, 3] = rng.integers(0, 10, n)
    y = np.where(np.isin(X[:, 3], [1, 4, 7]), 2, (X[:, 0] > 0).astype(int))
    params = {"objective": "multiclass", "num_class": 3, "num_leaves": 6,
              "min_data_per_group": 5, "cat_smooth": 1, "verbose": -1}  # fmt: skip
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[3]), 3)
    text = booster.model_to_string()
    assert re.search(r"^num_cat=[1-9]", text, re.M)  # categorical splits
    return text, {"kind": "rows", "rows": X[:16].tolist()}


def resized(text: str) -> str:
    """``tree_sizes`` recomputed after an edit."""
    start, stop = text.find("\nTree="), text.find("\nend of trees")
    if start < 0 or stop < start:
        return text
    blocks = re.split(r"(?=^Tree=)", text[start + 1 : stop + 1], flags=re.M)
    sizes = " ".join(str(len(b.encode())) for b in blocks if b)
    return re.sub(r"^tree_sizes=.*$", f"tree_sizes={sizes}", text, count=1, flags=re.M)


def _edit_line(lines: list[str], rng: random.Random) -> None:
    keyed = [i for i, line in enumerate(lines) if "=" in line and not line.startswith("tree_sizes")]
    in_trees = [i for i in keyed if not lines[i].startswith(("version", "num_", "max_", "objective", "feature", "label"))]  # fmt: skip
    i = rng.choice(in_trees if rng.random() < 0.75 else keyed)
    key, _, value = lines[i].partition("=")
    tokens = value.split(" ")
    op = rng.random()
    if op < 0.45:
        j = rng.randrange(len(tokens))
        n = len(tokens)
        tokens[j] = rng.choice([*_TOKENS, str(n), str(n - 1), str(n + 1), str(-n - 1), str(-n)])
    elif op < 0.55:
        del tokens[rng.randrange(len(tokens))]
    elif op < 0.65:
        tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(tokens))
    elif op < 0.7:
        tokens = tokens[: rng.randrange(len(tokens) + 1)]
    elif op < 0.78:
        key = lines[rng.choice(keyed)].partition("=")[0]
    elif op < 0.85:
        other = rng.choice(keyed)
        lines[i], lines[other] = key + "=" + lines[other].partition("=")[2], lines[other].partition("=")[0] + "=" + value  # fmt: skip
        return
    elif op < 0.92:
        del lines[i]
        return
    else:
        lines.insert(i, lines[i])
        return
    lines[i] = key + "=" + " ".join(tokens)


def lightgbm_mutants(text: str, seed: int) -> list[bytes]:
    data = text.encode()
    separators = [i for i, c in enumerate(data) if c in b"\n= "]
    out = []
    for m in range(MUTANTS):
        rng = random.Random(seed * 100_003 + m)
        kind = rng.random()
        if kind < 0.7:
            lines = text.split("\n")
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                _edit_line(lines, rng)
            mutant = "\n".join(lines)
            out.append((resized(mutant) if rng.random() < 0.8 else mutant).encode())
        elif kind < 0.85:
            out.append(mutate_bytes(data, rng, separators))
        else:
            lines = text.split("\n")
            op = rng.random()
            if op < 0.3:
                mutant = "\n".join(lines[: rng.randrange(len(lines))])
            elif op < 0.5:
                blanks = [i for i, line in enumerate(lines) if not line]
                del lines[rng.choice(blanks)]
                mutant = "\n".join(lines)
            elif op < 0.7:
                trees = [i for i, line in enumerate(lines) if line.startswith("Tree=")]
                a, b = rng.sample(trees, 2)
                lines[a], lines[b] = lines[b], lines[a]
                mutant = "\n".join(lines)
            elif op < 0.85:
                tail = rng.choice(['[', '[[1,1]]', '{}', '[["a"],[1,', '[[]]', '"x"', '[[true]]', "[[1e999]]"])  # fmt: skip
                mutant = text[: text.rindex("pandas_categorical:")] + "pandas_categorical:" + tail + "\n"  # fmt: skip
            else:
                at = rng.randrange(len(text))
                mutant = text[:at] + rng.choice(["\r", "\r\n", "\x00", "\n", "\n\n", "=", " "]) + text[at:]  # fmt: skip
            out.append((resized(mutant) if rng.random() < 0.8 else mutant).encode())
    return out


def test_mutants_are_refused_or_predict(model: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    text, inputs = model
    mutants = lightgbm_mutants(text, 30)
    assert len(mutants) == MUTANTS and len(set(mutants)) > 0.9 * MUTANTS
    assert mutants == lightgbm_mutants(text, 30)
    outcome = run_campaign("lightgbm", tmp_path / "pkg", OPTIONS, inputs, [text.encode(), *mutants])
    print(f"lightgbm text: {dict(outcome.counts)} in {outcome.seconds:.1f} s")
    assert outcome.crashes == [] and outcome.errors == []
    assert outcome.counts["ok"] > 50  # the campaign reaches the parser and the predictor
    assert outcome.counts["refused"] > 300
