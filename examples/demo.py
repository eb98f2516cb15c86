"""`make demo`: train, pack, inspect, and load in a fresh process, printing each step.

Uses the wine data set that ships with scikit-learn; nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "demo-out"
TIFFIN = [sys.executable, "-m", "tiffin.cli"]


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(args: list[str]) -> str:
    print("$ tiffin " + " ".join(args[len(TIFFIN) :]), flush=True)
    proc = subprocess.run(args, capture_output=True, text=True)
    print(proc.stdout.rstrip())
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(proc.returncode)
    return proc.stdout


def main() -> None:
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    import tiffin

    step("1. train a scikit-learn pipeline on the wine data set (ships with scikit-learn)")
    frame = load_wine(as_frame=True).frame
    X, y = frame.drop(columns="target"), frame["target"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    model = Pipeline([
        ("scale", ColumnTransformer([("num", StandardScaler(), list(X.columns))])),
        ("clf", LogisticRegression(max_iter=1000)),
    ]).fit(X_train, y_train)  # fmt: skip
    accuracy = float(model.score(X_test, y_test))
    print(f"test accuracy {accuracy:.3f} on {len(X_test)} rows")

    step("2. pack it: skops artifact, signature, example, traced requirements, uv lock, seal")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    started = time.perf_counter()
    pkg = tiffin.pack(
        model, OUT / "wine-1.0.0", name="wine", version="1.0.0", example=X_test.head(5),
        metadata={"description": "Wine cultivar classifier (demo)", "license": "Apache-2.0",
                  "metrics": {"accuracy": round(accuracy, 4)}},
    )  # fmt: skip
    print(f"packed {pkg.path} in {time.perf_counter() - started:.2f} s")
    print(f"digest {pkg.digest}")
    for path in sorted(p for p in pkg.path.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(pkg.path)}")

    step("3. inspect it (verifies every file; deserializes nothing)")
    run([*TIFFIN, "inspect", str(pkg.path), "--why"])

    step("4. verify it: a clean environment built from its lock, the example replayed there")
    run([*TIFFIN, "verify", str(pkg.path)])

    step("5. load it in a fresh process and predict three rows")
    rows = OUT / "rows.json"
    rows.write_text(json.dumps(X_test.head(3).to_dict(orient="records")))
    out = run([*TIFFIN, "predict", str(pkg.path), "--input", str(rows)])
    expected = model.predict(X_test.head(3)).tolist()
    assert json.loads(out) == expected, (out, expected)
    print(f"matches the in-memory model: {expected}")

    step("6. tamper with one byte: loading refuses, naming the file")
    artifact = pkg.path / "artifacts" / "model.skops"
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 1
    artifact.write_bytes(bytes(data))
    try:
        tiffin.load(pkg.path)
    except tiffin.IntegrityError as exc:
        print(f"refused: {exc.message}")
    else:
        raise SystemExit("tampered package loaded: this is a bug")
    data[-1] ^= 1
    artifact.write_bytes(bytes(data))
    np.testing.assert_array_equal(tiffin.load(pkg.path).predict(X_test.head(3)), expected)
    print("\ndemo finished: the package is in", pkg.path)


if __name__ == "__main__":
    main()
