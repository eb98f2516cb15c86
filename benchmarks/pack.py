"""Packing time: ``tiffin.pack`` with environment inference, against the floor and MLflow.

What a pack must prove is that the saved model loads and predicts in a fresh
interpreter, so the floor is exactly that: a fresh process that imports the framework,
loads the model (pickle for scikit-learn, safetensors + the class for PyTorch) and
predicts the example. tiffin's figure is the wall time of ``tiffin.pack`` (save, import
capture, lock, seal) called from a process that already holds the model, as in a
training script; MLflow's is ``mlflow.<flavor>.save_model(..., input_example=...)``
(which infers requirements the same way) timed the same way, in a side venv. Medians of
``TIFFIN_BENCH_RUNS`` (default 3) after one warm-up. Targets: tiffin at most 1.5 times
the floor and at most a third of MLflow's time.

Prints a table and writes bench-results/pack.json.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, side_venv, table, time_process, write_json
from cold_start import MLP_SRC, sklearn_model

RUNS = int(os.environ.get("TIFFIN_BENCH_RUNS", "3"))


def timed_packs(model: Any, example: Any, work: Path, name: str) -> list[float]:
    import tiffin

    times = []
    for i in range(RUNS + 1):  # the first is a warm-up (disk cache, uv's cache)
        dest = work / f"{name}-{i}"
        start = time.perf_counter()
        tiffin.pack(model, dest, name=name, version="1", example=example)
        times.append(time.perf_counter() - start)
        shutil.rmtree(dest)
    return times[1:]


def mlflow_saves(
    python: Path, flavor: str, load_model: str, work: Path, example: Path
) -> list[float]:
    code = textwrap.dedent(f"""
        import shutil, sys, time, numpy as np
        sys.path.insert(0, {str(work)!r})
        import mlflow.{flavor}
        {load_model}
        x = np.load({str(example)!r})
        for i in range({RUNS + 1}):
            dest = {str(work)!r} + f"/mlflow-{flavor}-{{i}}"
            t = time.perf_counter()
            mlflow.{flavor}.save_model(model, dest, input_example=x)
            print("TIME", time.perf_counter() - t)
            shutil.rmtree(dest)
    """)
    import subprocess

    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"mlflow save_model failed:\n{proc.stderr[-2000:]}")
    times = [float(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("TIME")]
    return times[1:]


def boosted_models(work: Path) -> dict[str, tuple[Any, np.ndarray, str]]:
    """XGBoost, LightGBM and CatBoost classifiers on one data set, each with its floor:
    a fresh process loading the framework's own model file and predicting."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=500, n_features=20, random_state=0)
    np.save(work / "gb-example.npy", X[:5])
    x = f"np.load({str(work / 'gb-example.npy')!r})"
    found: dict[str, tuple[Any, np.ndarray, str]] = {}
    try:
        import xgboost

        xgb = xgboost.XGBClassifier(n_estimators=50, max_depth=4).fit(X, y)
        xgb.save_model(work / "xgb.ubj")
        found["XGBoost classifier"] = (xgb, X[:5], f"import numpy as np, xgboost; m = xgboost.XGBClassifier(); "
                                       f"m.load_model({str(work / 'xgb.ubj')!r}); m.predict({x})")  # fmt: skip
    except ImportError:
        pass
    try:
        import lightgbm

        lgb = lightgbm.LGBMClassifier(n_estimators=50, verbose=-1).fit(X, y)
        lgb.booster_.save_model(str(work / "lgb.txt"))
        found["LightGBM classifier"] = (lgb, X[:5], f"import numpy as np, lightgbm; "
                                        f"lightgbm.Booster(model_file={str(work / 'lgb.txt')!r}).predict({x})")  # fmt: skip
    except ImportError:
        pass
    try:
        import catboost

        cb = catboost.CatBoostClassifier(iterations=50, verbose=0, allow_writing_files=False).fit(
            X, y
        )
        cb.save_model(str(work / "cb.json"), format="json")
        found["CatBoost classifier"] = (cb, X[:5], f"import numpy as np, catboost; m = catboost.CatBoostClassifier(); "
                                        f"m.load_model({str(work / 'cb.json')!r}, format='json'); m.predict({x})")  # fmt: skip
    except ImportError:
        pass
    return found


def main() -> None:
    import sklearn
    import torch

    work = Path(tempfile.mkdtemp(prefix="tiffin-bench-pack-"))
    results: dict[str, dict[str, float]] = {}
    rows: list[list[Any]] = []

    def record(case: str, label: str, times: list[float], floor: float | None) -> float:
        m = median(times)
        results.setdefault(case, {})[label] = m
        rows.append([case, label, f"{m:.2f} s", f"{m / floor:.2f}x" if floor else "-"])
        return m

    mlflow = side_venv("mlflow", ["mlflow==3.*", f"scikit-learn=={sklearn.__version__}",
                                  f"torch=={torch.__version__.split('+')[0]}"])  # fmt: skip

    model, X = sklearn_model()
    (work / "model.pkl").write_bytes(pickle.dumps(model))
    np.save(work / "sk-example.npy", X[:5])
    case = "20-feature sklearn pipeline"
    floor = record(case, "floor: fresh process, import + pickle.load + predict", time_process(
        [sys.executable, "-c", f"import pickle, numpy as np; m = pickle.load(open({str(work / 'model.pkl')!r}, 'rb')); "
         f"m.predict(np.load({str(work / 'sk-example.npy')!r}))"], RUNS), None)  # fmt: skip
    tiffin_sk = record(
        case, "tiffin.pack (capture + lock)", timed_packs(model, X[:5], work, "sk"), floor
    )
    if mlflow is not None:
        mlf = record(case, "mlflow.sklearn.save_model (requirement inference)", mlflow_saves(
            mlflow, "sklearn", f"import pickle; model = pickle.load(open({str(work / 'model.pkl')!r}, 'rb'))",
            work, work / "sk-example.npy"), floor)  # fmt: skip
        results[case]["tiffin / mlflow"] = tiffin_sk / mlf

    (work / "mlp_model.py").write_text(MLP_SRC)
    sys.path.insert(0, str(work))
    from mlp_model import MLP  # type: ignore[import-not-found]

    torch.manual_seed(0)
    mlp = MLP().eval()
    x = np.random.default_rng(0).normal(size=(5, 20)).astype(np.float32)
    np.save(work / "mlp-example.npy", x)
    from safetensors.torch import save_file

    save_file(mlp.state_dict(), str(work / "mlp.safetensors"))
    case = "PyTorch MLP"
    floor = record(case, "floor: fresh process, import + safetensors + class + forward", time_process(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(work)!r}); import numpy as np, torch; "
         f"from mlp_model import MLP; from safetensors.torch import load_file; m = MLP(); "
         f"m.load_state_dict(load_file({str(work / 'mlp.safetensors')!r})); m.eval(); "
         f"torch.no_grad()(m)(torch.from_numpy(np.load({str(work / 'mlp-example.npy')!r})))"], RUNS), None)  # fmt: skip
    tiffin_t = record(case, "tiffin.pack (capture + lock)", timed_packs(mlp, x, work, "mlp"), floor)
    if mlflow is not None:
        torch.save(mlp, work / "mlp.pt")
        mlf = record(case, "mlflow.pytorch.save_model (requirement inference)", mlflow_saves(
            mlflow, "pytorch", f"import torch; model = torch.load({str(work / 'mlp.pt')!r}, weights_only=False)",
            work, work / "mlp-example.npy"), floor)  # fmt: skip
        results[case]["tiffin / mlflow"] = tiffin_t / mlf

    for case, (model, example, floor_code) in boosted_models(work).items():
        floor = record(case, "floor: fresh process, import + load + predict", time_process(
            [sys.executable, "-c", floor_code], RUNS), None)  # fmt: skip
        record(
            case,
            "tiffin.pack (capture + lock)",
            timed_packs(model, example, work, case.split()[0].lower()),
            floor,
        )

    print(table(["case", "what", "median", "vs floor"], rows))
    path = write_json("pack", {"runs": RUNS, "median_seconds": results})
    print(f"\nwrote {path}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
